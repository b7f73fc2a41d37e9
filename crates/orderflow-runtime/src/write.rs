//! The one way an order is written (docs/design.md §3, step 7): a state
//! move by compare-and-set, fenced by the writer's stage lease, with its
//! audit entry and the idempotency record of what caused it in the same
//! store step; then the messages that follow, each confirmed by the broker,
//! before anything is acknowledged. The stage runner settles every
//! delivery through it, and every operator action (`orderflow-ops`) makes
//! its move through it: operators write orders the way stages do.

use crate::crash;
use crate::effect::Planned;
use orderflow_broker::{Outgoing, Publisher};
use orderflow_core::{OrderState, PolicyId, Stage};
use orderflow_store::{Note, OrderRecord, Store, Transition};

/// Who writes an order, and under which hold.
pub struct Writer<'a> {
    pub store: &'a Store,
    /// The stage whose lease the writer holds.
    pub stage: Stage,
    /// The lease's fencing number: a write under an older lease fails.
    pub fencing: u64,
    /// The idempotency record's step name (`msg:<id>` for a delivery,
    /// `action:<id>` for an operator action).
    pub step: &'a str,
    /// Audited as the actor.
    pub actor: &'a str,
    pub correlation_id: &'a str,
    pub policy_id: &'a PolicyId,
}

/// How a move went.
#[derive(Debug)]
pub enum Written {
    Done,
    /// This very step's move landed earlier (its answer was lost): its
    /// record, to re-emit.
    AlreadyRecorded(serde_json::Value),
    /// Someone else moved the order: read it again and decide again.
    Moved {
        state: OrderState,
    },
    /// A newer lease was issued: leave the order to its holder.
    LeaseLost,
}

impl Writer<'_> {
    /// Moves `order` as `plan` says, recording `record` (what the move
    /// sends, and whatever the writer needs to repeat it) under the step,
    /// and releasing the lease in the same step.
    pub async fn transition(
        &self,
        order: &OrderRecord,
        plan: &Planned,
        record: serde_json::Value,
    ) -> Result<Written, orderflow_store::Error> {
        let transition = Transition {
            expected_version: order.version,
            from: order.state,
            to: plan.to,
            reason: plan.reason.clone(),
            event: plan.event.clone(),
            actor: self.actor.to_owned(),
            correlation_id: self.correlation_id.to_owned(),
            policy_id: self.policy_id.clone(),
            rule: Some(plan.rule.clone()),
            fields_to_set: plan.fields.clone(),
            idempotency: Some((self.stage, self.step.to_owned(), record)),
            fencing: Some((self.stage, self.fencing)),
            release_lease: true,
        };
        match self.store.transition(&order.order_id, &transition).await {
            Ok(_) => Ok(Written::Done),
            Err(orderflow_store::Error::StaleFence { .. }) => Ok(Written::LeaseLost),
            Err(orderflow_store::Error::Conflict { actual_state, .. }) => {
                // Our own write may have landed before the answer was lost.
                let recorded = self
                    .store
                    .get_step_result(&order.order_id, self.stage, self.step)
                    .await?;
                Ok(recorded.map_or(
                    Written::Moved {
                        state: actual_state,
                    },
                    Written::AlreadyRecorded,
                ))
            }
            Err(err) => Err(err),
        }
    }

    /// An audit note for a decision that moves nothing.
    pub async fn note(
        &self,
        order: &OrderRecord,
        note: &Planned,
    ) -> Result<(), orderflow_store::Error> {
        let note = Note {
            event: note.event.clone(),
            reason: note.reason.clone(),
            actor: self.actor.to_owned(),
            correlation_id: self.correlation_id.to_owned(),
            policy_id: self.policy_id.clone(),
            rule: Some(note.rule.clone()),
        };
        self.store.note(&order.order_id, &note).await?;
        Ok(())
    }
}

/// Publishes the messages of a move in order, each confirmed by the broker
/// before the next; the first one not confirmed stops it (the caller has
/// not acknowledged anything, and the record re-emits them all).
pub async fn publish_confirmed(
    publisher: &Publisher,
    messages: impl IntoIterator<Item = Outgoing>,
) -> Result<(), orderflow_broker::Error> {
    for (i, message) in messages.into_iter().enumerate() {
        if i == 1 {
            crash::point(crash::BETWEEN_PUBLISHES);
        }
        publisher.publish(message).await?;
    }
    Ok(())
}
