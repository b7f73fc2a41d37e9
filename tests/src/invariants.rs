//! I1–I9 (docs/design.md §5), as observable from outside the fleet: the
//! simulator's ledger is the truth about side effects, the store and its
//! audit streams are the fleet's view, the inventory exception queue holds
//! what was refused at the door.
//!
//! [`check`] is a pure function of a [`Snapshot`] and [`Expectations`], so
//! it is tested here without a fleet; [`Fleet::check_invariants`] takes the
//! snapshot.
//!
//! The check itself is `orderflow_verify::check`; this module reads the
//! [`Snapshot`] of a [`Fleet`].

use crate::Fleet;
use orderflow_core::Stage;
use orderflow_store::OrderRecord;
pub use orderflow_verify::{AuditStep, Expectations, OrderView, Snapshot, Violation, check};
use std::collections::{BTreeMap, BTreeSet};

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

    /// Reads the ledger, every placed order and its audit, the inventory
    /// exception queue and the workers' liveness.
    pub async fn snapshot(&self) -> Snapshot {
        let expected = self.expectations();
        let mut ids: BTreeSet<String> = expected.placed.iter().cloned().collect();
        let ledger = self.ledger().await;
        // Orders the downstreams saw but the test did not place (a fleet
        // inventing orders) are checked too.
        ids.extend(ledger.payments.iter().map(|p| p.order_id.clone()));
        let mut orders = BTreeMap::new();
        let mut audits = BTreeMap::new();
        for id in ids {
            if orderflow_core::message::OrderId::parse(&id).is_none() {
                continue;
            }
            orders.insert(
                id.clone(),
                self.order(&id).await.as_ref().map(OrderView::from),
            );
            let audit = self.audit(&id).await;
            audits.insert(id.clone(), audit.iter().map(AuditStep::from).collect());
        }
        let parked_orders = if expected.store_lost_writes {
            self.parked_orders().await
        } else {
            BTreeSet::new()
        };
        Snapshot {
            ledger,
            orders,
            audits,
            inventory_exceptions: self.exceptions(Stage::Inventory).await,
            parked_orders,
            dead_workers: self.dead_workers(),
        }
    }

    /// Orders with a message in any stage's exception queue.
    pub async fn parked_orders(&self) -> BTreeSet<String> {
        let mut parked = BTreeSet::new();
        for stage in Stage::ALL {
            parked.extend(
                self.exceptions(stage)
                    .await
                    .iter()
                    .filter_map(|p| p.order_id()),
            );
        }
        parked
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
