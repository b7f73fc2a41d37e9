//! The retention sweep, run by the reconciler every
//! `retention.sweep_interval`: each finished order (delivered, rejected,
//! cancelled) that finished more than `retention.finished_for` ago is
//! written to the archive stream (`{ns}.archive`), and only once the broker
//! confirmed it are its Redis keys removed, by one script that checks the
//! order is still as archived. The fleet-wide Redis streams are trimmed by
//! age in the same sweep.
//!
//! Replicas share the sweep through the store's `archive` schedule: a
//! claimed order is not taken by another replica before its claim runs
//! out. A replica that dies between the confirm and the removal leaves the
//! order to be archived again when the claim runs out: the archive then
//! holds two copies with the same order id and version, which its readers
//! take as one (`orderflow_ops::archive`).

use futures_util::{StreamExt, TryStreamExt, stream};
use orderflow_broker::{Meta, Outgoing, Publisher};
use orderflow_runtime::{Env, Error};
use orderflow_store::{ArchivedOrder, Claim, Expired, ScheduleKind};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// Finished orders taken per sweep (the rest wait for the next one,
/// oldest first).
const BATCH: usize = 1000;
/// Archive publishes in flight at once.
const IN_FLIGHT: usize = 32;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Orders archived and removed from Redis.
    pub archived: usize,
    /// Orders archived but kept: they changed after the snapshot.
    pub kept: usize,
}

pub(crate) struct Retention {
    env: Env,
    publisher: Publisher,
    last: Mutex<Option<Instant>>,
}

impl Retention {
    pub(crate) fn new(env: Env, publisher: Publisher) -> Retention {
        Retention {
            env,
            publisher,
            last: Mutex::new(None),
        }
    }

    /// Sweeps if `retention.sweep_interval` has passed since the last sweep.
    pub(crate) async fn sweep_if_due(&self) -> Result<Swept, Error> {
        {
            let mut last = self.last.lock().expect("not poisoned");
            let every = self.env.policy.retention.sweep_interval;
            if last.is_some_and(|at| at.elapsed() < every) {
                return Ok(Swept::default());
            }
            *last = Some(Instant::now());
        }
        self.sweep().await
    }

    /// One pass: archive and remove what is due, trim the fleet streams.
    pub(crate) async fn sweep(&self) -> Result<Swept, Error> {
        let store = &self.env.store;
        let retention = &self.env.policy.retention;
        let trimmed = store.trim_fleet_streams(retention.streams_for).await?;
        debug!(trimmed, "fleet streams trimmed by age");
        let cutoff = finished_cutoff(store.server_time_ms().await?, retention.finished_for);
        let due = store.finished_before(cutoff, BATCH).await?;
        let ids: Vec<_> = due.iter().collect();
        store
            .schedule_if_absent(ScheduleKind::Archive, &ids, 0)
            .await?;
        let claims = store
            .claim_due(ScheduleKind::Archive, BATCH, self.env.policy.lease.ttl)
            .await?;
        let outcomes: Vec<Option<bool>> = stream::iter(claims)
            .map(|claim| async move { self.archive(claim, cutoff).await })
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await?;
        let swept = Swept {
            archived: outcomes.iter().filter(|o| **o == Some(true)).count(),
            kept: outcomes.iter().filter(|o| **o == Some(false)).count(),
        };
        metrics::counter!("orderflow_orders_archived_total").increment(swept.archived as u64);
        Ok(swept)
    }

    /// Archives one claimed order and removes its keys. `Some(true)`:
    /// archived and removed; `Some(false)`: archived, but it changed since,
    /// so kept; `None`: nothing to do (not finished, too young, gone).
    async fn archive(&self, claim: Claim, cutoff: jiff::Timestamp) -> Result<Option<bool>, Error> {
        let store = &self.env.store;
        let order_id = &claim.order_id;
        let outcome = match store.archive_snapshot(order_id).await? {
            // A lagging index: the order moved on or finished later.
            Some(snapshot) if snapshot.finished_at <= cutoff => {
                self.publisher.publish(self.message(&snapshot)).await?;
                match store.expire_archived(&snapshot).await? {
                    Expired::Removed { keys } => {
                        debug!(order_id = %order_id, keys, "archived and removed from Redis");
                        Some(true)
                    }
                    Expired::Missing => Some(true),
                    Expired::Changed { version, state } => {
                        warn!(order_id = %order_id, archived = snapshot.version, version, state = %state,
                            "changed after it was archived; kept, to be archived again");
                        Some(false)
                    }
                }
            }
            _ => None,
        };
        store.finish_claim(&claim).await?;
        Ok(outcome)
    }

    fn message(&self, snapshot: &ArchivedOrder) -> Outgoing {
        let body = serde_json::to_vec(snapshot).expect("an archived order serializes");
        let meta = Meta {
            // The same for a second copy after a crash: readers dedupe on it.
            message_id: Some(format!(
                "{}.archived.{}",
                snapshot.order_id, snapshot.version
            )),
            content_type: Some("application/json".into()),
            order_id: Some(snapshot.order_id.to_string()),
            order_version: Some(snapshot.version),
            timestamp: u64::try_from(snapshot.archived_at.as_second()).ok(),
            ..Meta::default()
        }
        .with_policy_id(&self.env.policy_id);
        Outgoing::to_queue(&self.env.spec.archive().name, body, meta)
    }
}

/// Orders that finished before this (server clock) are due.
fn finished_cutoff(now_ms: u64, finished_for: Duration) -> jiff::Timestamp {
    let keep = i64::try_from(finished_for.as_millis()).unwrap_or(i64::MAX);
    let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
    jiff::Timestamp::from_millisecond(now.saturating_sub(keep)).unwrap_or(jiff::Timestamp::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_the_retention_before_now() {
        let cutoff = finished_cutoff(1_000_000, Duration::from_secs(10));
        assert_eq!(cutoff.as_millisecond(), 990_000);
    }
}
