//! Stage leases with fencing numbers.
//!
//! A worker takes the order's stage lease before it calls the downstream,
//! so an overlapping duplicate delivery defers instead of running
//! concurrently. Each grant takes a number from a per order and stage
//! counter that only grows; a fenced transition carries the number and is
//! refused once a newer lease was granted, so a worker that lost its lease
//! while paused cannot write over its successor. Expiry is Redis' own
//! (`PEXPIRE`), so only the server's clock counts.

use crate::Store;
use crate::error::Error;
use orderflow_core::Stage;
use orderflow_core::message::OrderId;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// A granted stage lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub order_id: OrderId,
    pub stage: Stage,
    /// The owner's token: only its holder can renew or release the lease.
    pub token: String,
    /// Larger than every fencing number granted before for this order and
    /// stage.
    pub fencing: u64,
}

pub(crate) fn ttl_ms(ttl: Duration) -> Result<u64, Error> {
    match u64::try_from(ttl.as_millis()) {
        Ok(ms) if ms > 0 => Ok(ms),
        _ => Err(Error::InvalidArgument(format!(
            "lease ttl {ttl:?} must be at least 1 ms"
        ))),
    }
}

impl Store {
    /// Takes the lease, or `None` while someone else holds it. The holder
    /// asking again (same token) gets its lease back, extended.
    pub async fn acquire_lease(
        &self,
        order_id: &OrderId,
        stage: Stage,
        owner_token: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, Error> {
        if owner_token.is_empty() {
            return Err(Error::InvalidArgument("empty lease owner token".to_owned()));
        }
        let key = self.keys.lease(order_id, stage);
        let fencing: Option<String> = self
            .scripts
            .lease_acquire
            .key(&key)
            .key(self.keys.fence(order_id, stage))
            .arg(owner_token)
            .arg(ttl_ms(ttl)?)
            .invoke_async(&mut self.conn())
            .await?;
        let Some(fencing) = fencing else {
            return Ok(None);
        };
        Ok(Some(Lease {
            order_id: order_id.clone(),
            stage,
            token: owner_token.to_owned(),
            fencing: crate::parse::parse_num(&key, Some(&fencing))?,
        }))
    }

    /// Extends the lease to `ttl` from now; `false` if it is no longer
    /// this holder's (expired, or taken by someone else).
    pub async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, Error> {
        let renewed: i64 = self
            .scripts
            .lease_renew
            .key(self.keys.lease(&lease.order_id, lease.stage))
            .arg(&lease.token)
            .arg(lease.fencing)
            .arg(ttl_ms(ttl)?)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(renewed == 1)
    }

    /// Gives the lease up; `false` (and nothing changes) if it is not this
    /// holder's.
    pub async fn release(&self, lease: &Lease) -> Result<bool, Error> {
        let released: i64 = self
            .scripts
            .lease_release
            .key(self.keys.lease(&lease.order_id, lease.stage))
            .arg(&lease.token)
            .arg(lease.fencing)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(released == 1)
    }

    /// `Err(StaleFence)` if a lease other than the one numbered `fencing`
    /// was granted since. A fenced [`crate::Transition`] checks the same
    /// inside its script; this is for side effects outside the store.
    pub async fn check_fence(
        &self,
        order_id: &OrderId,
        stage: Stage,
        fencing: u64,
    ) -> Result<(), Error> {
        let key = self.keys.fence(order_id, stage);
        let current: Option<u64> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.conn())
            .await?;
        let current = current.unwrap_or(0);
        if current != fencing {
            return Err(Error::StaleFence {
                order_id: order_id.clone(),
                stage,
                fencing,
                current,
            });
        }
        Ok(())
    }

    /// Renews the lease every `ttl / 3` in a background task until the
    /// returned keeper is stopped or dropped. Call it right after acquiring:
    /// the keeper counts the lease's time from its own start. Needs a Tokio
    /// runtime.
    pub fn keep_alive(&self, lease: &Lease, ttl: Duration) -> LeaseKeeper {
        let (lost_tx, lost) = watch::channel(false);
        let task = tokio::spawn(renew_until_lost(self.clone(), lease.clone(), ttl, lost_tx));
        LeaseKeeper { lost, task }
    }
}

async fn renew_until_lost(store: Store, lease: Lease, ttl: Duration, lost: watch::Sender<bool>) {
    let mut ticker = tokio::time::interval((ttl / 3).max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is immediate; the lease was just granted.
    ticker.tick().await;
    // Measured from before each request, so the keeper never believes in a
    // lease longer than Redis does.
    let mut held_since = Instant::now();
    loop {
        ticker.tick().await;
        let asked_at = Instant::now();
        match store.renew(&lease, ttl).await {
            Ok(true) => held_since = asked_at,
            Ok(false) => break,
            Err(err) if held_since.elapsed() < ttl => {
                tracing::debug!(order_id = %lease.order_id, stage = %lease.stage, error = %err,
                    "lease renewal failed; retrying while the lease may still be valid");
            }
            Err(_) => break,
        }
    }
    tracing::warn!(order_id = %lease.order_id, stage = %lease.stage, fencing = lease.fencing,
        "stage lease lost");
    lost.send_replace(true);
}

/// Keeps a lease renewed in the background; see [`Store::keep_alive`].
/// Dropping it stops the renewals (the lease then expires unless released).
#[derive(Debug)]
pub struct LeaseKeeper {
    lost: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// The lease could not be renewed (taken over, expired, or Redis out of
    /// reach for a whole ttl): stop acting on it.
    pub fn is_lost(&self) -> bool {
        // The task ends only when the lease is lost (or it panicked, which
        // leaves nobody vouching for the lease either).
        *self.lost.borrow() || self.task.is_finished()
    }

    /// Resolves once the lease is lost.
    pub async fn lost(&mut self) {
        // An error means the task is gone, which is a loss as well.
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    /// Stops renewing; returns whether the lease was held throughout.
    pub fn stop(self) -> bool {
        let held = !self.is_lost();
        self.task.abort();
        held
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
