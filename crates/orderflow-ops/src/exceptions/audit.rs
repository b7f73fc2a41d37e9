//! Where an operator's action on an exception message is written: a note
//! on the order it names, or — when it names no order the store knows —
//! an entry in the fleet's audit stream.

use super::message::ExceptionMessage;
use super::{Error, Operator};
use orderflow_core::message::OrderId;
use orderflow_store::{FleetNote, Note};
use serde::Serialize;

/// Where an action was audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "to")]
pub enum Audited {
    /// A note on the order's audit stream, at the order's version.
    Order { order_id: String, version: u64 },
    /// The fleet audit stream, at this entry id.
    Fleet { entry_id: String },
}

/// One audited action on one message.
pub(crate) struct Action<'a> {
    /// `operator.replay`, `operator.discard`, `operator.edit`.
    pub(crate) event: &'a str,
    pub(crate) message: &'a ExceptionMessage,
    /// The order to note it on, when not the message's own (an edit that
    /// changed the order id).
    pub(crate) order: Option<OrderId>,
    pub(crate) reason: String,
}

impl Operator<'_> {
    pub(crate) async fn audit(&self, queue: &str, action: Action<'_>) -> Result<Audited, Error> {
        let actor = self.audit_actor()?;
        let message = action.message;
        let order = action.order.or_else(|| message.order());
        let correlation_id = message
            .correlation_id
            .clone()
            .or_else(|| order.as_ref().map(|o| o.as_str().to_owned()))
            .unwrap_or_else(|| message.id.clone());
        if let Some(order_id) = &order {
            let note = Note {
                event: action.event.to_owned(),
                reason: Some(action.reason.clone()),
                actor: actor.clone(),
                correlation_id: correlation_id.clone(),
                policy_id: self.policy.id(),
                rule: None,
            };
            match self.store.note(order_id, &note).await {
                Ok(version) => {
                    return Ok(Audited::Order {
                        order_id: order_id.as_str().to_owned(),
                        version,
                    });
                }
                Err(orderflow_store::Error::NotFound(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        let subject = match &message.order_id {
            Some(order) => format!("{queue} message {} (order {order})", message.id),
            None => format!("{queue} message {}", message.id),
        };
        let entry_id = self
            .store
            .fleet_note(&FleetNote {
                event: action.event.to_owned(),
                subject,
                reason: Some(action.reason),
                actor,
                correlation_id,
                policy_id: self.policy.id(),
            })
            .await?;
        Ok(Audited::Fleet { entry_id })
    }
}
