//! The retry budget of each downstream, shared by the whole fleet: retries —
//! in-process retries and deferred re-attempts alike — may add at most
//! `ratio` of the first attempts made in the recent window, plus
//! `min_per_window`. A fleet of many workers retrying one overloaded API
//! therefore adds a bounded load, however many of them see the failures.
//!
//! One hash per downstream, one field per second; the script sums the
//! window and forgets older seconds, all on Redis' clock.
//!
//! A stage worker counts its first attempts in the process
//! ([`RetryBudget`] for [`Store`]) and adds them to the hash at most every
//! [`TALLY_FLUSH`], or with its next retry: one script call per downstream
//! per tick instead of one per downstream call (measured in
//! docs/performance.md). The cost is that other processes see a first
//! attempt up to [`TALLY_FLUSH`] late, which can only refuse a retry they
//! would have been granted: the budget errs towards less load.

use crate::Store;
use crate::error::Error;
use orderflow_core::Stage;
use orderflow_core::policy::BudgetPolicy;
use orderflow_downstream::{RetryBudget, Spend};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a process keeps its first attempts before adding them to the
/// fleet's budget.
pub const TALLY_FLUSH: Duration = Duration::from_millis(100);

/// A process's first attempts per downstream not yet in the store.
#[derive(Debug)]
pub(crate) struct Tally {
    pending: [AtomicU64; Stage::ALL.len()],
    /// When each downstream's tally was last added.
    flushed_at: [Mutex<Instant>; Stage::ALL.len()],
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            pending: std::array::from_fn(|_| AtomicU64::new(0)),
            flushed_at: std::array::from_fn(|_| Mutex::new(Instant::now())),
        }
    }
}

impl Tally {
    fn index(downstream: Stage) -> usize {
        Stage::ALL
            .iter()
            .position(|s| *s == downstream)
            .expect("every stage is in Stage::ALL")
    }

    fn slot(&self, downstream: Stage) -> &AtomicU64 {
        &self.pending[Tally::index(downstream)]
    }

    /// Takes the first attempts counted for `downstream`, to add them.
    fn take(&self, downstream: Stage) -> u64 {
        self.slot(downstream).swap(0, Ordering::Relaxed)
    }

    /// Counts one; true when the tally is due to be added.
    fn count(&self, downstream: Stage) -> bool {
        self.slot(downstream).fetch_add(1, Ordering::Relaxed);
        let mut flushed_at = self.flushed_at[Tally::index(downstream)]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if flushed_at.elapsed() < TALLY_FLUSH {
            return false;
        }
        *flushed_at = Instant::now();
        true
    }
}

/// What the budget said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The retry asked for may be made.
    pub granted: bool,
    /// Retries still allowed in the window after this one.
    pub left: u64,
}

impl Store {
    /// Counts a first attempt against `downstream` in the store now,
    /// growing its budget (with this process's tally).
    pub async fn record_first_attempt(
        &self,
        downstream: Stage,
        policy: &BudgetPolicy,
    ) -> Result<Budget, Error> {
        let tally = self.tally.take(downstream) + 1;
        self.budget("peek", downstream, policy, tally).await
    }

    /// Spends one retry if the budget allows it, after adding this
    /// process's tally of first attempts.
    pub async fn try_spend_retry(
        &self,
        downstream: Stage,
        policy: &BudgetPolicy,
    ) -> Result<Budget, Error> {
        let tally = self.tally.take(downstream);
        self.budget("retry", downstream, policy, tally).await
    }

    /// The budget as it stands (with this process's tally), spending
    /// nothing.
    pub async fn budget_left(
        &self,
        downstream: Stage,
        policy: &BudgetPolicy,
    ) -> Result<Budget, Error> {
        let tally = self.tally.take(downstream);
        self.budget("peek", downstream, policy, tally).await
    }

    async fn budget(
        &self,
        op: &str,
        downstream: Stage,
        policy: &BudgetPolicy,
        tally: u64,
    ) -> Result<Budget, Error> {
        let window_s = policy.window.as_secs().max(1);
        let answer = self
            .scripts
            .budget
            .key(self.keys.budget(downstream))
            .arg(op)
            .arg(window_s)
            .arg(policy.ratio)
            .arg(policy.min_per_window)
            .arg(tally)
            .invoke_async::<(u8, u64)>(&mut self.conn())
            .await;
        match answer {
            Ok((granted, left)) => Ok(Budget {
                granted: granted == 1,
                left,
            }),
            Err(err) => {
                // Not added: count them again with the next call.
                self.tally
                    .slot(downstream)
                    .fetch_add(tally, Ordering::Relaxed);
                Err(err.into())
            }
        }
    }
}

/// The downstream clients spend the fleet's budget through this.
impl RetryBudget for Store {
    type Error = Error;

    /// Counted in the process; added to the store once the tally is due.
    async fn record_first_attempt(
        &self,
        downstream: Stage,
        policy: &BudgetPolicy,
    ) -> Result<(), Error> {
        if self.tally.count(downstream) {
            let tally = self.tally.take(downstream);
            self.budget("peek", downstream, policy, tally).await?;
        }
        Ok(())
    }

    async fn try_spend_retry(
        &self,
        downstream: Stage,
        policy: &BudgetPolicy,
    ) -> Result<Spend, Error> {
        let Budget { granted, left } = Store::try_spend_retry(self, downstream, policy).await?;
        Ok(Spend { granted, left })
    }
}
