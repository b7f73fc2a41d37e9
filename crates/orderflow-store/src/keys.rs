//! Key names. Every key of one order carries the order id as a hash tag
//! (`{ns}:order:{<id>}:…`), so an order's keys, and every script that
//! touches them, live in one Redis Cluster slot. Fleet-wide keys (the fleet
//! audit stream, the state index, the schedules) have no tag: each is one key
//! on its own and is only ever written by a single-key command or script.

use crate::error::Error;
use crate::schedule::ScheduleKind;
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Stage};

pub const DEFAULT_NAMESPACE: &str = "orderflow";

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    ns: String,
}

impl Keys {
    /// Braces would move the hash tag and colons would blur the layout, so a
    /// namespace is a plain word.
    pub(crate) fn new(ns: &str) -> Result<Keys, Error> {
        let valid = (1..=64).contains(&ns.len())
            && ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return Err(Error::InvalidNamespace(ns.to_owned()));
        }
        Ok(Keys { ns: ns.to_owned() })
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.ns
    }

    fn order(&self, order: &OrderId, suffix: &str) -> String {
        format!("{}:order:{{{order}}}:{suffix}", self.ns)
    }

    /// The order record (hash).
    pub(crate) fn state(&self, order: &OrderId) -> String {
        self.order(order, "state")
    }

    /// The per-order audit stream: the record of every change.
    pub(crate) fn audit(&self, order: &OrderId) -> String {
        self.order(order, "audit")
    }

    /// One step's recorded result (string, JSON).
    pub(crate) fn idem(&self, order: &OrderId, stage: Stage, step: &str) -> String {
        self.order(order, &format!("idem:{stage}:{step}"))
    }

    /// The names of the order's idempotency records (set), so retention
    /// can remove them all: their step names are open-ended.
    pub(crate) fn steps(&self, order: &OrderId) -> String {
        self.order(order, "steps")
    }

    /// Every key an order can have besides its idempotency records, for
    /// retention to remove.
    pub(crate) fn order_keys(&self, order: &OrderId) -> Vec<String> {
        let mut keys = vec![self.state(order), self.audit(order), self.steps(order)];
        for stage in Stage::ALL {
            keys.push(self.attempts(order, stage));
            keys.push(self.lease(order, stage));
            keys.push(self.fence(order, stage));
        }
        keys.push(self.early_cancel(order));
        keys
    }

    /// Attempts of one stage (counter).
    pub(crate) fn attempts(&self, order: &OrderId, stage: Stage) -> String {
        self.order(order, &format!("attempts:{stage}"))
    }

    /// A cancellation kept for an order not created yet (hash), applied in
    /// the order's creation.
    pub(crate) fn early_cancel(&self, order: &OrderId) -> String {
        self.order(order, "early_cancel")
    }

    /// The stage lease (hash: token, fencing; expires).
    pub(crate) fn lease(&self, order: &OrderId, stage: Stage) -> String {
        self.order(order, &format!("lease:{stage}"))
    }

    /// The stage's fencing counter: only ever incremented, never expires.
    pub(crate) fn fence(&self, order: &OrderId, stage: Stage) -> String {
        self.order(order, &format!("fence:{stage}"))
    }

    /// The fleet-wide audit stream (capped), an index over the per-order ones.
    pub(crate) fn fleet_audit(&self) -> String {
        format!("{}:audit", self.ns)
    }

    /// Orders in one state (sorted set, score = updated_at ms).
    pub(crate) fn index(&self, state: OrderState) -> String {
        format!("{}:index:{state}", self.ns)
    }

    /// Due times of one kind of schedule (sorted set, score = due ms).
    pub(crate) fn budget(&self, downstream: Stage) -> String {
        format!("{}:budget:{downstream}", self.ns)
    }

    pub(crate) fn schedule(&self, kind: ScheduleKind) -> String {
        format!("{}:schedule:{}", self.ns, kind.as_str())
    }

    /// One message of one operator replay (hash: state, owner, at_ms).
    pub(crate) fn replay(&self, replay_id: &str, message_id: &str) -> String {
        format!("{}:replay:{replay_id}:{message_id}", self.ns)
    }

    /// One worker process's heartbeat (hash, expires).
    pub(crate) fn worker(&self, actor: &str) -> String {
        format!("{}:worker:{actor}", self.ns)
    }

    /// Matches every worker heartbeat of the namespace (for `SCAN`); a
    /// namespace holds no glob characters.
    pub(crate) fn workers_pattern(&self) -> String {
        format!("{}:worker:*", self.ns)
    }

    /// A paused stage: who paused it, why and since when (hash).
    pub(crate) fn pause(&self, stage: Stage) -> String {
        format!("{}:paused:{stage}", self.ns)
    }

    /// Operators' actions on the fleet rather than on one order (stream).
    pub(crate) fn fleet_notes(&self) -> String {
        format!("{}:fleet:audit", self.ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> OrderId {
        OrderId::parse("ord-1").unwrap()
    }

    /// The hash tag Redis Cluster uses: the first `{…}` with something inside.
    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let close = open + key[open..].find('}').unwrap();
        &key[open + 1..close]
    }

    #[test]
    fn every_order_key_shares_the_order_hash_tag() {
        let keys = Keys::new("orderflow").unwrap();
        let o = order();
        for key in [
            keys.state(&o),
            keys.audit(&o),
            keys.idem(&o, Stage::Payment, "charge"),
            keys.attempts(&o, Stage::Payment),
            keys.lease(&o, Stage::Payment),
            keys.fence(&o, Stage::Payment),
            keys.early_cancel(&o),
            keys.steps(&o),
        ] {
            assert_eq!(hash_tag(&key), "ord-1", "{key}");
            assert!(key.starts_with("orderflow:order:{ord-1}:"), "{key}");
        }
        for key in keys.order_keys(&o) {
            assert_eq!(hash_tag(&key), "ord-1", "{key}");
        }
        assert_eq!(keys.state(&o), "orderflow:order:{ord-1}:state");
        assert_eq!(
            keys.idem(&o, Stage::Payment, "charge"),
            "orderflow:order:{ord-1}:idem:payment:charge"
        );
    }

    #[test]
    fn fleet_keys_are_namespaced_and_untagged() {
        let keys = Keys::new("t-1").unwrap();
        assert_eq!(keys.fleet_audit(), "t-1:audit");
        assert_eq!(keys.index(OrderState::Paid), "t-1:index:paid");
        assert_eq!(
            keys.schedule(ScheduleKind::PendingPayment),
            "t-1:schedule:pending_payment"
        );
        assert_eq!(
            keys.worker("payment-worker@h/1"),
            "t-1:worker:payment-worker@h/1"
        );
        assert_eq!(keys.workers_pattern(), "t-1:worker:*");
        assert_eq!(keys.pause(Stage::Payment), "t-1:paused:payment");
        assert_eq!(keys.fleet_notes(), "t-1:fleet:audit");
    }

    #[test]
    fn namespaces_that_would_break_the_layout_are_refused() {
        for bad in ["", "a{b}", "a:b", "a b", &"n".repeat(65)] {
            assert!(Keys::new(bad).is_err(), "{bad:?}");
        }
        assert!(Keys::new("test-0190a.b_c").is_ok());
    }
}
