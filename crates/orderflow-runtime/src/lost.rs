//! Redis acknowledged a write and then lost it: an asynchronous replica was
//! promoted, or a host crashed under `appendfsync everysec`.
//!
//! Every message a stage sends carries the version its order reached
//! (`orderflow-order-version`), and the write always comes before the
//! publish, so the store is never legitimately behind a message about its
//! order. Finding it behind proves a loss. What the lost writes recorded (a
//! charge, a shipment, a release) did happen at the providers, so moving on
//! from the older state could repeat or contradict it: the only safe answer
//! is to stop the order for a person, saying what was lost.

use crate::effect::{Effect, Emission, Planned};
use orderflow_core::OrderState;
use orderflow_core::state::Disposition;
use orderflow_store::OrderRecord;

/// The reason an order stopped for lost writes carries.
pub const REASON: &str = "store_lost_writes";

/// The rule named in the audit when an order stops for lost writes.
pub const RULE: &str = "store.behind_message";

/// What a delivery proves the store lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// The whole order: a message about it was sent at `sent_at`.
    Order { sent_at: u64 },
    /// The order's latest writes: the message was sent at `sent_at`, the
    /// store holds `stored`.
    Writes { sent_at: u64, stored: u64 },
}

impl Lost {
    /// What a person reads on the order and the parked message.
    pub fn detail(&self, message_id: &str) -> String {
        let check = "compare the providers' records of this order (reservation, charge, shipment) with what `orderctl order show` says, then resolve it";
        match self {
            Lost::Order { sent_at } => format!(
                "the store lost this order: message {message_id} was sent at its version {sent_at}, and the store has no record of it (Redis lost writes it had acknowledged); {check}"
            ),
            Lost::Writes { sent_at, stored } => format!(
                "the store lost writes of this order: message {message_id} was sent at its version {sent_at}, the store holds version {stored} (Redis lost writes it had acknowledged); {check}"
            ),
        }
    }
}

/// The order escalated with [`REASON`] and `detail`, its message parked in
/// the stage's exception queue.
pub fn escalation(detail: String) -> Effect {
    Effect {
        transition: Some(Planned {
            to: OrderState::Escalated,
            reason: Some(REASON.into()),
            event: "escalated".into(),
            rule: RULE.into(),
            fields: Vec::new(),
        }),
        emissions: vec![Emission::Exception {
            reason: REASON.into(),
            outcome: None,
            detail: Some(detail),
            keep_original: false,
        }],
        note: None,
    }
}

/// Whether a message sent at `sent_at` proves the store lost writes of
/// `order`. A message without a version (a producer's, the reconciler's,
/// an operator's) proves nothing; an order resting in a final or a
/// person's state is left where it is, since no stage moves it anyway.
pub fn lost_writes(sent_at: Option<u64>, order: Option<&OrderRecord>) -> Option<Lost> {
    let sent_at = sent_at?;
    let Some(order) = order else {
        return Some(Lost::Order { sent_at });
    };
    (order.version < sent_at && order.state.disposition() == Disposition::InFlight).then_some(
        Lost::Writes {
            sent_at,
            stored: order.version,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_core::message::OrderId;

    fn order(state: OrderState, version: u64) -> OrderRecord {
        let now = jiff::Timestamp::now();
        OrderRecord {
            order_id: OrderId::parse("ord-1").unwrap(),
            state,
            version,
            reason: None,
            body: serde_json::Value::Null,
            correlation_id: "ord-1".into(),
            policy_id: "pol-1".into(),
            created_at: now,
            updated_at: now,
            downstream_ids: Default::default(),
            last_outcomes: Default::default(),
            cancel_requested: None,
            reservation_committed: false,
        }
    }

    #[test]
    fn a_message_without_a_version_proves_nothing() {
        assert_eq!(lost_writes(None, None), None);
        assert_eq!(
            lost_writes(None, Some(&order(OrderState::Reserved, 2))),
            None
        );
    }

    #[test]
    fn a_store_at_or_past_the_message_lost_nothing() {
        for version in [3, 4, 9] {
            assert_eq!(
                lost_writes(Some(3), Some(&order(OrderState::Paid, version))),
                None
            );
        }
    }

    #[test]
    fn a_store_behind_the_message_lost_writes() {
        assert_eq!(
            lost_writes(Some(4), Some(&order(OrderState::Reserved, 2))),
            Some(Lost::Writes {
                sent_at: 4,
                stored: 2
            })
        );
        assert_eq!(lost_writes(Some(4), None), Some(Lost::Order { sent_at: 4 }));
    }

    #[test]
    fn a_resting_order_is_left_where_it_is() {
        for state in [
            OrderState::Escalated,
            OrderState::Blocked,
            OrderState::Delivered,
            OrderState::Cancelled,
        ] {
            assert_eq!(lost_writes(Some(9), Some(&order(state, 2))), None);
        }
    }
}
