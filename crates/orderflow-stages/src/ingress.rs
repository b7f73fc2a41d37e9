//! What producers send, as the inventory stage admits it: `order.placed`
//! creates the order (a same-body duplicate is absorbed, a different body
//! under a known id is refused as `order_id_conflict`), `order.cancel`
//! records the request on the order, and step messages come back from the
//! stage's delay tiers and the reconciler.

use orderflow_broker::Incoming;
use orderflow_core::OrderState;
use orderflow_core::message::{Inbound, Invalid, OrderId, OrderPlaced, parse_inbound};
use orderflow_runtime::{Admission, Env, Error, StepMessage};
use orderflow_store::{CreateOutcome, Note};
use serde_json::Value;
use tracing::info;

/// What a delivery to the inventory queue is.
pub enum Message {
    Placed(Box<OrderPlaced>),
    Cancel { order_id: OrderId, reason: String },
    Step(StepMessage),
}

pub fn read(body: &[u8]) -> Result<Message, Invalid> {
    let schema = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("schema").and_then(Value::as_str).map(str::to_owned));
    if schema.as_deref() == Some(orderflow_runtime::step::STEP_V1) {
        return StepMessage::parse(body, orderflow_core::Stage::Inventory).map(Message::Step);
    }
    Ok(match parse_inbound(body)? {
        Inbound::Placed(placed) => Message::Placed(placed),
        Inbound::Cancel(cancel) => Message::Cancel {
            order_id: cancel.order_id,
            reason: cancel.reason,
        },
    })
}

pub async fn admit(delivery: &Incoming, env: &Env) -> Result<Admission, Error> {
    let message = match read(delivery.body()) {
        Ok(message) => message,
        Err(invalid) => return Ok(Admission::Malformed(invalid)),
    };
    let correlation_id = delivery.meta().correlation_id.clone().unwrap_or_default();
    match message {
        Message::Step(step) => Ok(Admission::Order(step.order_id)),
        Message::Placed(placed) => {
            let body: Value =
                serde_json::from_slice(delivery.body()).expect("a valid order is JSON");
            let correlation_id = if correlation_id.is_empty() {
                placed.order_id.to_string()
            } else {
                correlation_id
            };
            let id = placed.order_id.clone();
            let created = env
                .store
                .create_order(&id, &body, &correlation_id, &env.policy_id, &env.actor)
                .await?;
            if let CreateOutcome::AlreadyExists {
                same_body: false, ..
            } = created
            {
                return Ok(Admission::Refused {
                    order_id: id,
                    reason: "order_id_conflict".into(),
                    detail: "an order with this id and a different body exists; \
                             the new message was not applied"
                        .into(),
                });
            }
            if let Some(earlier) = &placed.supersedes {
                supersede(env, earlier, &id, &correlation_id).await?;
            }
            Ok(Admission::Order(id))
        }
        Message::Cancel { order_id, reason } => {
            let note = note(
                env,
                "order.cancel_requested",
                format!("cancelled: {reason}"),
                &correlation_id,
            );
            match env.store.request_cancel(&order_id, &note).await {
                Ok(_) => Ok(Admission::Order(order_id)),
                Err(orderflow_store::Error::NotFound(_)) => Ok(Admission::Refused {
                    order_id,
                    reason: "cancel_unknown_order".into(),
                    detail: "no order with this id is known; nothing was cancelled".into(),
                }),
                Err(err) => Err(err.into()),
            }
        }
    }
}

/// The states in which an order has not been charged: a replacement order
/// may still cancel it.
const BEFORE_PAYMENT: [OrderState; 3] = [
    OrderState::Received,
    OrderState::InventoryPending,
    OrderState::Reserved,
];

/// Asks the stage that holds `earlier` to cancel it, if it is still before
/// payment; otherwise notes on it that the replacement came too late.
async fn supersede(
    env: &Env,
    earlier: &OrderId,
    by: &OrderId,
    correlation_id: &str,
) -> Result<(), Error> {
    let Some(record) = env.store.get_order(earlier).await? else {
        info!(order_id = %by, supersedes = %earlier, "the superseded order is unknown; nothing to cancel");
        return Ok(());
    };
    if BEFORE_PAYMENT.contains(&record.state) {
        let note = note(
            env,
            "order.superseded",
            format!("superseded by {by}"),
            correlation_id,
        );
        env.store.request_cancel(earlier, &note).await?;
    } else {
        let note = note(
            env,
            "order.supersede_ignored",
            format!("superseded by {by} too late: already {}", record.state),
            correlation_id,
        );
        env.store.note(earlier, &note).await?;
    }
    Ok(())
}

fn note(env: &Env, event: &str, reason: String, correlation_id: &str) -> Note {
    Note {
        event: event.to_owned(),
        reason: Some(reason),
        actor: env.actor.clone(),
        correlation_id: correlation_id.to_owned(),
        policy_id: env.policy_id.clone(),
        rule: None,
    }
}
