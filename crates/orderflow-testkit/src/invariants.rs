//! I1–I9 (docs/design.md §5), as observable from outside the fleet: the
//! simulator's ledger is the truth about side effects, the store and its
//! audit streams are the fleet's view, the inventory exception queue holds
//! what was refused at the door.
//!
//! The check is `orderflow_verify::check`, a pure function of a
//! [`Snapshot`] and [`Expectations`]; the snapshot is read by
//! `orderflow_verify::read_snapshot`, as `orderflow-fleet` reads its own.
//! This module hands them a [`Fleet`]'s namespace and what its test did.

use crate::Fleet;
use orderflow_broker::Connection;
use orderflow_store::OrderRecord;
pub use orderflow_verify::{Expectations, Snapshot, Violation, check};
use orderflow_verify::{Namespace, read_snapshot};
use std::collections::BTreeSet;

impl Fleet {
    /// Good orders (tok_ok, a supported country, plentiful stock) may end
    /// delayed or escalated under faults, never refused or rolled back.
    pub async fn assert_good_orders_not_refused(&self, orders: &[crate::Order]) {
        for order in orders {
            let plain = order.payment_token == "tok_ok"
                && order.country != "ZZ"
                && order.items.iter().all(|(sku, _, _)| sku != "SKU-SCARCE");
            if !plain {
                continue;
            }
            let record = self.expect_order(&order.order_id).await;
            assert!(
                matches!(
                    record.state,
                    crate::OrderState::Delivered | crate::OrderState::Escalated
                ),
                "{} is {} ({:?}): {}",
                order.order_id,
                record.state,
                record.reason,
                self.history(&order.order_id).await
            );
        }
    }

    /// What the invariants are measured against, from what this fleet
    /// published and the simulator's profile.
    pub fn expectations(&self) -> Expectations {
        let tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        Expectations {
            placed: tracked.placed.keys().cloned().collect(),
            malformed: tracked.malformed.clone(),
            payment_idempotent: self.profile.payment.capabilities.idempotent,
            external_refunds: tracked.external_refunds.clone(),
            store_lost_writes: tracked.store_lost_writes,
        }
    }

    /// Reads the ledger, every order placed or seen by the payment
    /// provider with its audit, the exception queues and the workers'
    /// liveness: `orderflow_verify::read_snapshot`, as `orderflow-fleet`
    /// reads its own.
    pub async fn snapshot(&self) -> Snapshot {
        let ledger = self.ledger().await;
        let broker = self.broker().await;
        read_snapshot(
            &self.verify_namespace(&broker),
            ledger,
            &self.expectations(),
            self.dead_workers(),
        )
        .await
        .unwrap_or_else(|e| panic!("reading the snapshot: {e}"))
    }

    /// Orders with a message in any stage's exception queue.
    pub async fn parked_orders(&self) -> BTreeSet<String> {
        let broker = self.broker().await;
        orderflow_verify::parked_orders(&self.verify_namespace(&broker))
            .await
            .unwrap_or_else(|e| panic!("reading the exception queues: {e}"))
    }

    /// The namespace as `orderflow_verify` reads it, through `broker`.
    fn verify_namespace<'a>(&'a self, broker: &'a Connection) -> Namespace<'a> {
        Namespace {
            store: &self.store,
            broker,
            names: self.spec.names(),
        }
    }

    /// Every violation of I1–I9 now.
    pub async fn check_invariants(&self) -> Vec<Violation> {
        check(&self.snapshot().await, &self.expectations())
    }

    /// Panics listing every violation of I1–I9, with each offending order's
    /// history.
    pub async fn assert_invariants(&self) {
        let violations = self.check_invariants().await;
        if violations.is_empty() {
            return;
        }
        let mut report = String::new();
        let mut shown = BTreeSet::new();
        for v in &violations {
            report.push_str(&format!("  {v}\n"));
        }
        for v in &violations {
            if let Some(id) = &v.order_id
                && shown.len() < 20
                && shown.insert(id.clone())
            {
                report.push_str(&format!("  history {id}: {}\n", self.history(id).await));
            }
        }
        panic!("{} invariant violations:\n{report}", violations.len());
    }

    /// Waits (up to `timeout`) for every placed order to settle, then
    /// asserts the invariants: how every test ends.
    pub async fn settle_and_check(&self, timeout: std::time::Duration) -> Vec<OrderRecord> {
        let records = self.wait_all_settled(timeout).await;
        self.assert_invariants().await;
        records
    }
}
