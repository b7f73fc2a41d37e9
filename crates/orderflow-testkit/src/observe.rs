//! Reading what happened — the simulator's ledger, orders and audit entries
//! in the store, messages parked in exception queues, customer events — and
//! waiting for orders to get somewhere.

use crate::Fleet;
use downstream_sim::Ledger;
use orderflow_broker::stream::{self, Offset};
use orderflow_broker::{Settlement, admin};
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Stage};
use orderflow_store::{AuditEntry, OrderRecord};
pub use orderflow_verify::{Parked, is_settled};
use serde::Deserialize;
use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// How often the waits poll.
const POLL: Duration = Duration::from_millis(50);

/// A read of the events stream has caught up once nothing came for this
/// long.
const EVENTS_CAUGHT_UP: Duration = Duration::from_millis(150);

/// A customer-facing event from `{ns}.events.stream`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Event {
    /// `order.paid`, `fulfilment.packed`, ...
    #[serde(skip)]
    pub routing_key: String,
    pub event_id: String,
    pub order_id: String,
    /// The order's version at which it entered `state`; `None` if the
    /// event carries none.
    #[serde(default)]
    pub version: Option<u64>,
    pub state: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub at: String,
}

fn order_id(id: &str) -> OrderId {
    OrderId::parse(id).unwrap_or_else(|| panic!("`{id}` is not a valid order id"))
}

impl Fleet {
    /// `GET /_ledger`: what really happened downstream.
    pub async fn ledger(&self) -> Ledger {
        let url = format!("{}/_ledger", self.sim_url);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: unreadable ledger: {e}"))
    }

    /// The order as the store has it; `None` if it does not exist. A store
    /// error (Redis restarting) is retried for a few seconds.
    pub async fn order(&self, id: &str) -> Option<OrderRecord> {
        let id = order_id(id);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.store.get_order(&id).await {
                Ok(record) => return record,
                Err(e) if Instant::now() > deadline => panic!("reading order {id}: {e}"),
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// The order, which must exist.
    pub async fn expect_order(&self, id: &str) -> OrderRecord {
        self.order(id)
            .await
            .unwrap_or_else(|| panic!("order {id} is not in the store"))
    }

    /// The order's audit entries, oldest first.
    pub async fn audit(&self, id: &str) -> Vec<AuditEntry> {
        let id = order_id(id);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.store.order_audit(&id).await {
                Ok(entries) => return entries,
                Err(e) if Instant::now() > deadline => panic!("reading the audit of {id}: {e}"),
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// The states the order went through, from its audit stream:
    /// `received → reserved → paid`.
    pub async fn history(&self, id: &str) -> String {
        let audit = self.audit(id).await;
        let mut out = String::new();
        for entry in &audit {
            if entry.from.is_some() && entry.from == Some(entry.to) {
                let _ = write!(out, " [{}]", entry.event);
                continue;
            }
            if !out.is_empty() {
                out.push_str(" → ");
            }
            let _ = write!(out, "{}", entry.to);
            if let Some(reason) = &entry.reason {
                let _ = write!(out, " ({reason})");
            }
        }
        if out.is_empty() {
            "(no audit entries)".into()
        } else {
            out
        }
    }

    /// Every message in a stage's exception queue, read without consuming:
    /// each is taken unsettled and all are returned to the queue at the end.
    pub async fn exceptions(&self, stage: Stage) -> Vec<Parked> {
        let queue = self.spec.names().exception_queue(stage);
        let mut held = Vec::new();
        let mut parked = Vec::new();
        let conn = self.broker().await;
        while let Some(fetched) = admin::get(&conn, &queue)
            .await
            .unwrap_or_else(|e| panic!("reading {queue}: {}", orderflow_broker::chain(&e)))
        {
            let message = fetched.message();
            parked.push(Parked {
                queue: queue.clone(),
                body: message.body().to_vec(),
                meta: message.meta().clone(),
                redelivered: message.redelivered(),
            });
            held.push(fetched);
            if held.len() > 1_000 {
                break;
            }
        }
        for fetched in held {
            let _ = fetched.settle(Settlement::Requeue).await;
        }
        parked
    }

    /// The messages parked in a stage's exception queue for `order`.
    pub async fn exceptions_for(&self, stage: Stage, order: &str) -> Vec<Parked> {
        self.exceptions(stage)
            .await
            .into_iter()
            .filter(|p| p.order_id().as_deref() == Some(order))
            .collect()
    }

    /// Every customer event so far, read from `{ns}.events.stream` on
    /// from where the previous call stopped (a test's namespace has a
    /// stream of its own, whose offsets count from 0), so each call returns
    /// the ones of earlier calls too. Reading takes nothing from the
    /// stream: every subscriber sees every event.
    pub async fn events(&self) -> Vec<Event> {
        let name = self.spec.events().name.clone();
        let mut events = self.events.lock().await;
        let from = Offset::Exact(events.len() as u64);
        let mut unreadable = None;
        let conn = self.broker().await;
        stream::read(
            &conn,
            &name,
            from,
            EVENTS_CAUGHT_UP,
            |message| match serde_json::from_slice::<Event>(&message.body) {
                Ok(mut event) => {
                    event.routing_key = message.routing_key;
                    events.push(event);
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    unreadable = Some(format!(
                        "an unreadable customer event ({e}): {}",
                        String::from_utf8_lossy(&message.body)
                    ));
                    ControlFlow::Break(())
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("reading {name}: {}", orderflow_broker::chain(&e)));
        if let Some(unreadable) = unreadable {
            panic!("{unreadable}");
        }
        events.clone()
    }

    /// The order's customer events so far, duplicates (re-emissions with
    /// the same event id) dropped.
    pub async fn events_for(&self, order: &str) -> Vec<Event> {
        let mut seen = std::collections::BTreeSet::new();
        self.events()
            .await
            .into_iter()
            .filter(|e| e.order_id == order && seen.insert(e.event_id.clone()))
            .collect()
    }

    /// The routing keys of the order's events, in arrival order.
    pub async fn event_keys(&self, order: &str) -> Vec<String> {
        self.events_for(order)
            .await
            .into_iter()
            .map(|e| e.routing_key)
            .collect()
    }

    /// Waits until the order's audit entries satisfy `ready` (a re-check
    /// writes an entry without moving the order); returns them.
    pub async fn wait_audit(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&[AuditEntry]) -> bool,
    ) -> Vec<AuditEntry> {
        let deadline = Instant::now() + timeout;
        loop {
            let entries = self.audit(id).await;
            if ready(&entries) {
                return entries;
            }
            assert!(
                Instant::now() <= deadline,
                "{id}: no {what} within {timeout:?}; history: {}",
                self.history(id).await
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the order's events satisfy `ready`; returns them.
    pub async fn wait_events(
        &self,
        order: &str,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&[Event]) -> bool,
    ) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events_for(order).await;
            if ready(&events) {
                return events;
            }
            if Instant::now() > deadline {
                let keys: Vec<&str> = events.iter().map(|e| e.routing_key.as_str()).collect();
                panic!(
                    "{order}: no {what} within {timeout:?}; events so far: {keys:?}; history: {}",
                    self.history(order).await
                );
            }
            tokio::time::sleep(POLL * 2).await;
        }
    }

    /// Waits until the order exists and satisfies `ready`; returns it.
    /// Panics after `timeout` with the order's history.
    pub async fn wait_for(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&OrderRecord) -> bool,
    ) -> OrderRecord {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(record)) = self.store.get_order(&order_id(id)).await
                && ready(&record)
            {
                return record;
            }
            if Instant::now() > deadline {
                let now = self.order(id).await;
                panic!(
                    "{id}: not {what} within {timeout:?}; now {}; history: {}",
                    now.map_or("absent from the store".to_owned(), |r| format!(
                        "{} v{} reason {:?}",
                        r.state, r.version, r.reason
                    )),
                    self.history(id).await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the order is in one of `states`.
    pub async fn wait_state(
        &self,
        id: &str,
        states: &[OrderState],
        timeout: Duration,
    ) -> OrderRecord {
        let what = format!("in {states:?}");
        self.wait_for(id, &what, timeout, |r| states.contains(&r.state))
            .await
    }

    /// Waits until every order is terminal (delivered, rejected, cancelled)
    /// or needs a person (blocked, escalated) — or, after the test made the
    /// store lose writes, is forgotten by the store but accounted for
    /// (`orderflow_verify::forgotten_but_accounted`). Panics listing the others. Returns the records of
    /// the orders the store has.
    pub async fn wait_settled(&self, ids: &[String], timeout: Duration) -> Vec<OrderRecord> {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<String> = ids.to_vec();
        let lost_writes = self.expectations().store_lost_writes;
        loop {
            let mut still = Vec::new();
            let mut forgotten = Vec::new();
            for id in &pending {
                match self.store.get_order(&order_id(id)).await {
                    Ok(Some(record)) if is_settled(record.state) => {}
                    Ok(None) if lost_writes => forgotten.push(id.clone()),
                    _ => still.push(id.clone()),
                }
            }
            if !forgotten.is_empty() {
                let (ledger, parked) = (self.ledger().await, self.parked_orders().await);
                still.extend(
                    forgotten.into_iter().filter(|id| {
                        !orderflow_verify::forgotten_but_accounted(&ledger, &parked, id)
                    }),
                );
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let mut report = String::new();
                for id in pending.iter().take(20) {
                    let _ = writeln!(report, "  {id}: {}", self.history(id).await);
                }
                panic!(
                    "{} of {} orders not settled within {timeout:?}:\n{report}",
                    pending.len(),
                    ids.len()
                );
            }
            tokio::time::sleep(POLL * 2).await;
        }
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            match self.order(id).await {
                Some(record) => records.push(record),
                None if lost_writes => {}
                None => panic!("order {id} settled, then vanished from the store"),
            }
        }
        records
    }

    /// Waits until every order this fleet placed has settled.
    pub async fn wait_all_settled(&self, timeout: Duration) -> Vec<OrderRecord> {
        let ids = self.placed_ids();
        self.wait_settled(&ids, timeout).await
    }

    /// Ids of the valid orders placed so far.
    pub fn placed_ids(&self) -> Vec<String> {
        self.tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .placed
            .keys()
            .cloned()
            .collect()
    }

    /// Waits until the ledger satisfies `ready`; returns it.
    pub async fn wait_ledger(
        &self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&Ledger) -> bool,
    ) -> Ledger {
        let deadline = Instant::now() + timeout;
        loop {
            let ledger = self.ledger().await;
            if ready(&ledger) {
                return ledger;
            }
            assert!(
                Instant::now() < deadline,
                "the ledger shows no {what} within {timeout:?}: {ledger:#?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until a stage's exception queue holds a message matching
    /// `ready`; returns it.
    pub async fn wait_parked(
        &self,
        stage: Stage,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&Parked) -> bool,
    ) -> Parked {
        let deadline = Instant::now() + timeout;
        loop {
            let parked = self.exceptions(stage).await;
            if let Some(found) = parked.iter().find(|p| ready(p)) {
                return found.clone();
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = parked
                    .iter()
                    .map(|p| format!("{:?} {:?}", p.order_id(), p.reason()))
                    .collect();
                panic!("{stage} exceptions: no {what} within {timeout:?}; there: {seen:?}");
            }
            tokio::time::sleep(POLL * 4).await;
        }
    }

    /// Refunds the order's payment on the simulator itself (not through the
    /// fleet), as a provider-side reversal would; the invariants then do not
    /// count that refund against the fleet.
    pub async fn refund_on_sim(&self, order: &str) {
        let ledger = self.ledger().await;
        let payment = ledger
            .payments
            .iter()
            .find(|p| p.order_id == order)
            .unwrap_or_else(|| panic!("{order} has no payment to refund"));
        self.tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .external_refunds
            .insert(order.to_owned());
        let url = format!("{}/v1/payments/{}/refund", self.sim_url, payment.id);
        let response = self
            .http
            .post(&url)
            .header("Idempotency-Key", format!("e2e-refund-{order}"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {url}: {status} {text}");
    }
}

/// How many orders ended where (`state (reason)` → count), for a test's
/// output.
pub fn tally(records: &[OrderRecord]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for record in records {
        let key = match &record.reason {
            Some(reason) => format!("{} ({reason})", record.state),
            None => record.state.to_string(),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    format!("{counts:?}")
}

/// The states of an order's reservations in the ledger, oldest first.
pub fn reservation_states(
    ledger: &Ledger,
    id: &str,
) -> Vec<downstream_sim::ledger::ReservationState> {
    ledger
        .reservations
        .iter()
        .filter(|r| r.order_id == id)
        .map(|r| r.state)
        .collect()
}
