//! The reconciler: makes sure nothing waits silently once the stages have
//! done their part. Every `fulfilment.poll_interval` it
//!
//! - asks the shipping stage to poll each accepted shipment (fulfilment
//!   tracking to `delivered`, stalls, and the payment looked at again);
//! - asks the payment stage to re-check each `payment_pending` order older
//!   than the ambiguity window (which then escalates it if still unknown);
//! - asks the owning stage to escalate each order left in a non-terminal
//!   state past its stage's `deadline` (`stuck`);
//! - parks each cancel kept for an order that never arrived
//!   (`ingress`), once it has waited `exceptions.replay_window`, in the
//!   inventory exception queue as `cancel_unknown_order`;
//! - every `retention.sweep_interval`, archives each finished order past
//!   `retention.finished_for` and removes it from Redis (`retention`).
//!
//! It never writes an order itself: it sends the owning stage a step
//! message, so every change goes through the one settled path (lease,
//! compare-and-set, recorded messages). Replicas share the work through the
//! store's schedules: a claimed order is not asked about again by any
//! replica before its claim runs out.

use crate::retention::{Retention, Swept};
use futures_util::{StreamExt, TryStreamExt, stream};
use orderflow_broker::{Meta, Outgoing, Publisher};
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Stage};
use orderflow_runtime::{Check, Env, Error, StepMessage};
use orderflow_store::{IndexEntry, KeptCancel, ScheduleKind};
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Orders read from a state's index per page, scheduled per command, and
/// claimed per kind and round (the rest are claimed in the next rounds,
/// earliest due first).
const BATCH: usize = 1000;
/// Step messages a round has in flight at once (each on a channel of the
/// publisher's pool).
const ASKS_IN_FLIGHT: usize = 32;

pub struct Reconciler {
    env: Env,
    publisher: Publisher,
    retention: Retention,
}

/// A request the reconciler makes of a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ask {
    stage: Stage,
    check: Option<Check>,
}

impl Reconciler {
    pub fn new(env: Env, publisher: Publisher) -> Reconciler {
        let retention = Retention::new(env.clone(), publisher.clone());
        Reconciler {
            env,
            publisher,
            retention,
        }
    }

    /// Runs rounds until `shutdown`. A failed round (Redis or the broker
    /// away) is logged and tried again next time: nothing is lost, the
    /// orders are still where they were.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), Error> {
        let every = self.env.policy.fulfilment.poll_interval;
        info!(every = ?every, "reconciler started");
        loop {
            match self.round().await {
                Ok(asked) if asked > 0 => debug!(asked, "reconciler round"),
                Ok(_) => {}
                Err(err) => warn!(error = %err, "reconciler round failed; trying again"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One pass over the three schedules; returns how many orders it asked
    /// about.
    pub async fn round(&self) -> Result<usize, Error> {
        let policy = &self.env.policy;
        // The fleet's orders by state, for dashboards and alerts: one
        // reconciler's view is the fleet's (they all read the same index).
        for (state, count) in self.env.store.count_by_state().await? {
            metrics::gauge!("orderflow_orders", "state" => state.as_str()).set(count as f64);
        }
        let tracking = self
            .candidates(OrderState::ShipmentAccepted, Duration::ZERO)
            .await?
            .into_iter()
            .map(|id| {
                let ask = Ask {
                    stage: Stage::Shipping,
                    check: Some(Check::Fulfilment),
                };
                (id, ask)
            })
            .collect();
        let mut asked = self
            .ask(
                ScheduleKind::ShipmentTracking,
                tracking,
                policy.fulfilment.poll_interval,
            )
            .await?;

        let window = policy.stage(Stage::Payment).ambiguity_window;
        let pending = self
            .candidates(OrderState::PaymentPending, window)
            .await?
            .into_iter()
            .map(|id| {
                let ask = Ask {
                    stage: Stage::Payment,
                    check: None,
                };
                (id, ask)
            })
            .collect();
        asked += self
            .ask(ScheduleKind::PendingPayment, pending, policy.lease.ttl)
            .await?;

        let mut stuck = HashMap::new();
        for state in OrderState::ALL {
            let Some(stage) = state.owner() else { continue };
            if state == OrderState::ShipmentAccepted {
                // Tracking has its own stall threshold.
                continue;
            }
            for id in self.candidates(state, policy.stage(stage).deadline).await? {
                let ask = Ask {
                    stage,
                    check: Some(Check::Deadline),
                };
                stuck.insert(id, ask);
            }
        }
        asked += self
            .ask(ScheduleKind::Stuck, stuck, policy.lease.ttl)
            .await?;
        asked += self.park_unmet_cancels().await?;
        let swept = self.retention.sweep_if_due().await?;
        if swept.archived + swept.kept > 0 {
            debug!(
                archived = swept.archived,
                kept = swept.kept,
                "retention sweep"
            );
        }
        Ok(asked)
    }

    /// One retention sweep now, whatever `retention.sweep_interval` says:
    /// for tools and tests that must not wait for the schedule.
    pub async fn sweep_retention(&self) -> Result<Swept, Error> {
        self.retention.sweep().await
    }

    /// Parks each due kept cancel whose order has not arrived, as it came,
    /// then forgets it; one whose order arrived was used up by the order's
    /// creation and only leaves the schedule. Parked before dropped: a
    /// crash in between parks it twice, never not at all.
    async fn park_unmet_cancels(&self) -> Result<usize, Error> {
        let store = &self.env.store;
        let kind = ScheduleKind::EarlyCancel;
        // What an operator sees while cancels wait for their orders.
        let waiting = store.scheduled_count(kind).await?;
        metrics::gauge!("orderflow_cancels_kept").set(waiting as f64);
        let mut parked = 0;
        for claim in store
            .claim_due(kind, BATCH, self.env.policy.lease.ttl)
            .await?
        {
            if let Some(kept) = store.kept_cancel(&claim.order_id).await? {
                self.publisher
                    .publish(self.unmet_cancel(&claim.order_id, &kept))
                    .await?;
                store
                    .drop_kept_cancel(&claim.order_id, kept.kept_at_ms)
                    .await?;
                metrics::counter!("orderflow_reconciler_asks_total", "kind" => kind.as_str())
                    .increment(1);
                parked += 1;
            }
            store.finish_claim(&claim).await?;
        }
        Ok(parked)
    }

    fn unmet_cancel(&self, order_id: &OrderId, kept: &KeptCancel) -> Outgoing {
        let wait = humantime::format_duration(self.env.policy.exceptions.replay_window);
        let meta = Meta {
            message_id: Some(kept.message_id.clone()),
            correlation_id: Some(kept.correlation_id.clone()).filter(|c| !c.is_empty()),
            order_id: Some(order_id.to_string()),
            stage: Some(Stage::Inventory),
            timestamp: u64::try_from(jiff::Timestamp::now().as_second()).ok(),
            first_attempt_at: i64::try_from(kept.kept_at_ms).ok(),
            reason: Some("cancel_unknown_order".into()),
            last_error: Some(format!(
                "{}: kept for {wait} (exceptions.replay_window), but no order {order_id} arrived; nothing was cancelled",
                kept.reason
            )),
            ..Meta::default()
        }
        .with_policy_id(&self.env.policy_id);
        let queue = self.env.spec.names().exception_queue(Stage::Inventory);
        Outgoing::to_queue(&queue, kept.message.clone(), meta)
    }

    /// Every order in `state` for at least `older_than`, oldest first,
    /// read page by page: however many wait there, each is a candidate.
    async fn candidates(
        &self,
        state: OrderState,
        older_than: Duration,
    ) -> Result<Vec<OrderId>, Error> {
        let now = jiff::Timestamp::now();
        let age = |entry: &IndexEntry| {
            Duration::try_from(now.duration_since(entry.updated_at)).unwrap_or_default()
        };
        let mut ids = Vec::new();
        let mut oldest = None;
        let mut after = None;
        loop {
            let page = self
                .env
                .store
                .orders_in_state_after(state, after.as_ref(), BATCH)
                .await?;
            if oldest.is_none() {
                oldest = page.entries.first().map(age);
            }
            // Oldest first: once one is too young, so are the rest.
            let young = page
                .entries
                .iter()
                .position(|entry| age(entry) < older_than);
            let old = young.unwrap_or(page.entries.len());
            ids.extend(page.entries.into_iter().take(old).map(|e| e.order_id));
            match page.next {
                Some(next) if young.is_none() => after = Some(next),
                _ => break,
            }
        }
        // How long the oldest order has waited in the state: what an alert
        // on "pending payments older than the window" reads.
        metrics::gauge!("orderflow_oldest_order_seconds", "state" => state.as_str())
            .set(oldest.unwrap_or_default().as_secs_f64());
        Ok(ids)
    }

    /// Schedules the candidates, claims what is due, and sends a step
    /// message for each claimed order still a candidate. A claimed order
    /// that is no longer one has moved on: its schedule entry is removed.
    async fn ask(
        &self,
        kind: ScheduleKind,
        candidates: HashMap<OrderId, Ask>,
        every: Duration,
    ) -> Result<usize, Error> {
        let store = &self.env.store;
        let ids: Vec<&OrderId> = candidates.keys().collect();
        for chunk in ids.chunks(BATCH) {
            store.schedule_if_absent(kind, chunk, 0).await?;
        }
        let mut asks = Vec::new();
        for claim in store.claim_due(kind, BATCH, every).await? {
            let Some(ask) = candidates.get(&claim.order_id) else {
                store.finish_claim(&claim).await?;
                continue;
            };
            let step = match ask.check {
                Some(check) => StepMessage::check(&claim.order_id, ask.stage, check),
                None => StepMessage::new(&claim.order_id, ask.stage),
            };
            let meta = Meta {
                // One id per claim: a copy re-sent after a crash is the
                // same message to the stage's idempotency record.
                message_id: Some(format!(
                    "{}.reconciler.{}.{}",
                    claim.order_id,
                    kind.as_str(),
                    claim.claimed_until_ms
                )),
                order_id: Some(claim.order_id.to_string()),
                stage: Some(ask.stage),
                timestamp: u64::try_from(jiff::Timestamp::now().as_second()).ok(),
                ..Meta::default()
            }
            .with_policy_id(&self.env.policy_id);
            let queue = self.env.spec.names().work_queue(ask.stage);
            asks.push(Outgoing::to_queue(&queue, step.to_bytes(), meta));
        }
        // Confirmed publishes in flight at once: a round with a thousand
        // shipments to track must not take a thousand round trips.
        let asked = asks.len();
        stream::iter(asks)
            .map(Ok::<_, Error>)
            .try_for_each_concurrent(ASKS_IN_FLIGHT, |ask| async move {
                self.publisher.publish(ask).await?;
                metrics::counter!("orderflow_reconciler_asks_total", "kind" => kind.as_str())
                    .increment(1);
                Ok(())
            })
            .await?;
        Ok(asked)
    }
}
