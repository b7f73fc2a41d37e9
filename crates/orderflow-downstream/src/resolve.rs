//! One logical downstream operation, run to a decision: call, classify,
//! `decide`, and while the decision is "retry now" or "query status", do
//! that and decide again. Whatever else the policy decides (proceed, defer,
//! park, fail, compensate, block, escalate) is returned for the worker to
//! act on.
//!
//! Retries in the run spend the downstream's fleet-wide budget; a refused
//! spend is re-decided as "budget spent", which applies the stage's
//! overload behaviour (defer) instead of a retry. A deferred re-attempt
//! (sent at once, or after its status query found nothing done) is a new
//! request, not a retry: the delay tier it waited out paces it, the
//! breaker still guards it, and its own retries spend budget again. (Had it
//! to win a budget spent by a fault rate above the budget's ratio, it
//! would be deferred until its tiers ran out and escalate an operation
//! that only needed sending again.)

use crate::transport::{Answer, Downstream};
use orderflow_core::decide::{BudgetState, DecisionContext, Ruling, decide};
use orderflow_core::policy::{BudgetPolicy, DownstreamPolicy};
use orderflow_core::{Certainty, Decision, Outcome, Policy, Stage};
use rand::RngExt;
use std::future::Future;
use std::time::Duration;

/// The fleet-wide retry budget of each downstream (the store keeps it):
/// first attempts grow it, retries spend it. A trait, so this crate needs
/// only the two calls and not the store.
pub trait RetryBudget: Sync {
    type Error;

    /// Counts a first attempt against `downstream`, growing its budget.
    fn record_first_attempt(
        &self,
        downstream: Stage,
        policy: &BudgetPolicy,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Spends one retry if the budget allows it.
    fn try_spend_retry(
        &self,
        downstream: Stage,
        policy: &BudgetPolicy,
    ) -> impl Future<Output = Result<Spend, Self::Error>> + Send;
}

/// What the budget said to a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spend {
    /// The retry may be made.
    pub granted: bool,
    /// Retries still allowed in the window after this one.
    pub left: u64,
}

/// How the delivery starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Send the operation: a first attempt, or a deferred re-attempt.
    Act,
    /// Ask by key first: a parked `*_pending` order being re-checked.
    Query,
}

/// The decision reached and how it was reached.
#[derive(Debug)]
pub struct Resolution<T> {
    pub ruling: Ruling,
    /// The last answer the decision was made on.
    pub answer: Answer<T>,
    /// The context of that decision (attempts, queried, budget, breaker).
    pub context: DecisionContext,
    /// Operation calls sent in this run (status queries not counted).
    pub calls: u32,
}

/// Runs the operation to a decision. `base` carries what the caller knows
/// (stage, deferrals, elapsed, capabilities, order facts); its outcome is
/// replaced by each answer.
pub async fn resolve<T, B, A, AF, Q, QF>(
    policy: &Policy,
    budget: &B,
    downstream: &Downstream,
    mut ctx: DecisionContext,
    start: Start,
    mut act: A,
    mut query: Q,
) -> Result<Resolution<T>, B::Error>
where
    B: RetryBudget,
    A: FnMut() -> AF,
    AF: Future<Output = Answer<T>>,
    Q: FnMut() -> QF,
    QF: Future<Output = Answer<T>>,
{
    let stage = ctx.stage;
    let dp = policy.downstream(stage);
    let poll = &policy.stage(stage).status_poll;
    let mut calls = 0;

    let mut answer = match start {
        Start::Query => {
            ctx.queried = true;
            poll_status(&mut query, poll.limit, poll.interval).await
        }
        Start::Act => {
            budget.record_first_attempt(stage, &dp.budget).await?;
            calls += 1;
            act().await
        }
    };

    loop {
        ctx.outcome = answer.outcome.clone();
        ctx.breaker = downstream.breaker().state();
        let ruling = decide(policy, &ctx);
        match next(&ruling) {
            Next::Retry { delay } => {
                if calls == 0 {
                    // The run began by asking and learnt nothing was done:
                    // this send is the run's request, not a retry.
                    budget.record_first_attempt(stage, &dp.budget).await?;
                } else if ctx.budget != BudgetState::Spent
                    && !spend_retry(budget, stage, dp).await?
                {
                    // A policy that retries even with the budget spent
                    // (the naive baseline has no budget) retries unbudgeted
                    // rather than asking the budget again and again.
                    ctx.budget = BudgetState::Spent;
                    continue;
                }
                tokio::time::sleep(jittered(delay, dp.retry.jitter)).await;
                ctx.attempt += 1;
                ctx.queried = false;
                calls += 1;
                answer = act().await;
            }
            Next::Query => {
                ctx.queried = true;
                answer = poll_status(&mut query, poll.limit, poll.interval).await;
            }
            Next::Decided => {
                return Ok(Resolution {
                    ruling,
                    answer,
                    context: ctx,
                    calls,
                });
            }
        }
    }
}

/// What a run does after a ruling: the two rulings `resolve` acts on
/// itself, or the end of the run.
enum Next {
    Retry { delay: Duration },
    Query,
    Decided,
}

fn next(ruling: &Ruling) -> Next {
    match ruling.decision {
        Decision::RetryAfter { delay } => Next::Retry { delay },
        Decision::QueryStatus => Next::Query,
        _ => Next::Decided,
    }
}

/// The ruling [`resolve`] reaches if every answer in the run — the
/// operation's and the status query's — is `answer`, and the budget grants
/// every retry: what a dry run tells an operator the stage will decide.
pub fn resolve_on(
    policy: &Policy,
    mut ctx: DecisionContext,
    start: Start,
    answer: &Outcome,
) -> (Ruling, DecisionContext) {
    ctx.outcome = answer.clone();
    ctx.queried = start == Start::Query;
    // `decide` ends every run (attempts and queries are bounded); the
    // bound only keeps a broken policy from hanging a dry run.
    for _ in 0..1_000 {
        let ruling = decide(policy, &ctx);
        match next(&ruling) {
            Next::Retry { .. } => {
                ctx.attempt += 1;
                ctx.queried = false;
            }
            Next::Query => ctx.queried = true,
            Next::Decided => return (ruling, ctx),
        }
    }
    (decide(policy, &ctx), ctx)
}

/// Takes one retry from the downstream's fleet-wide budget, if it has one
/// left, and reports what is left.
async fn spend_retry<B: RetryBudget>(
    budget: &B,
    stage: Stage,
    dp: &DownstreamPolicy,
) -> Result<bool, B::Error> {
    let spend = budget.try_spend_retry(stage, &dp.budget).await?;
    let downstream = stage.as_str();
    metrics::gauge!("orderflow_retry_budget_left", "downstream" => downstream)
        .set(spend.left as f64);
    let granted = if spend.granted { "granted" } else { "refused" };
    metrics::counter!("orderflow_retries_total", "downstream" => downstream, "budget" => granted)
        .increment(1);
    Ok(spend.granted)
}

/// Asks by key, and asks again while the answer stays unknown, up to
/// `limit` times `interval` apart.
async fn poll_status<T, Q, QF>(query: &mut Q, limit: u32, interval: Duration) -> Answer<T>
where
    Q: FnMut() -> QF,
    QF: Future<Output = Answer<T>>,
{
    let mut answer = query().await;
    for _ in 1..limit {
        if answer.outcome.certainty != Certainty::Unknown {
            break;
        }
        tokio::time::sleep(interval).await;
        answer = query().await;
    }
    answer
}

/// "Equal jitter": half the delay fixed, half random, so a fleet that failed
/// together does not retry together.
fn jittered(delay: Duration, jitter: bool) -> Duration {
    if !jitter || delay.is_zero() {
        return delay;
    }
    let half = delay / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}
