//! The retry budget of each downstream, shared by the whole fleet: retries —
//! in-process retries and deferred re-attempts alike — may add at most
//! `ratio` of the first attempts made in the recent window, plus
//! `min_per_window`. A fleet of many workers retrying one overloaded API
//! therefore adds a bounded load, however many of them see the failures.
//!
//! One hash per downstream, one field per second; the script sums the
//! window and forgets older seconds, all on Redis' clock.

use crate::Store;
use crate::error::Error;
use orderflow_core::Stage;
use orderflow_core::policy::BudgetPolicy;
use orderflow_downstream::{RetryBudget, Spend};

/// What the budget said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The retry asked for may be made.
    pub granted: bool,
    /// Retries still allowed in the window after this one.
    pub left: u64,
}

impl Store {
    /// Counts a first attempt against `downstream`, growing its budget.
    pub async fn record_first_attempt(
        &self,
        downstream: Stage,
        policy: &BudgetPolicy,
    ) -> Result<Budget, Error> {
        self.budget("first", downstream, policy).await
    }

    /// Spends one retry if the budget allows it.
    pub async fn try_spend_retry(
        &self,
        downstream: Stage,
        policy: &BudgetPolicy,
    ) -> Result<Budget, Error> {
        self.budget("retry", downstream, policy).await
    }

    /// The budget as it stands, spending nothing.
    pub async fn budget_left(
        &self,
        downstream: Stage,
        policy: &BudgetPolicy,
    ) -> Result<Budget, Error> {
        self.budget("peek", downstream, policy).await
    }

    async fn budget(
        &self,
        op: &str,
        downstream: Stage,
        policy: &BudgetPolicy,
    ) -> Result<Budget, Error> {
        let window_s = policy.window.as_secs().max(1);
        let (granted, left): (u8, u64) = self
            .scripts
            .budget
            .key(self.keys.budget(downstream))
            .arg(op)
            .arg(window_s)
            .arg(policy.ratio)
            .arg(policy.min_per_window)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(Budget {
            granted: granted == 1,
            left,
        })
    }
}

/// The downstream clients spend the fleet's budget through this.
impl RetryBudget for Store {
    type Error = Error;

    async fn record_first_attempt(
        &self,
        downstream: Stage,
        policy: &BudgetPolicy,
    ) -> Result<(), Error> {
        Store::record_first_attempt(self, downstream, policy).await?;
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
