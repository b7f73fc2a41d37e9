//! The stage policy engine: what to do with a classified downstream outcome.
//!
//! [`decide`] is a pure function of the policy and a [`DecisionContext`]
//! (stage, class, certainty, attempts, elapsed time, downstream capabilities,
//! retry budget, breaker state, what is known of the order). It returns a
//! [`Ruling`]: the [`Decision`] and the name of the rule that produced it, so
//! every log line and audit entry can say *why*. The runtime turns a decision
//! into ack / delay / exception in one place.
//!
//! The rules, in the order they are tried (docs/design.md §4):
//! 1. a confirmed success proceeds;
//! 2. an order cancelled meanwhile is compensated, but only on a known outcome;
//! 3. a payment failure learned after shipping is escalated, never rolled back;
//! 4. an unknown outcome is resolved by a status query first, then re-sent
//!    with the same key (idempotent stages), parked as pending (payment), or
//!    escalated once the ambiguity window has passed — never compensated;
//! 5. deterministic failures fail fast: inventory rejects, payment rejects and
//!    releases the reservation, shipping blocks for a business decision;
//! 6. transient failures retry within the in-process limit and the fleet's
//!    retry budget, then move to delay tiers; an open breaker or a spent
//!    budget applies the stage's overload behaviour.

use crate::outcome::{Certainty, FailureClass, Outcome};
use crate::policy::{DownstreamPolicy, Overload, Policy, StagePolicy, Strategy};
use crate::stage::Stage;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What the downstream can do, as declared in the policy or learned at run
/// time (a status endpoint answering 501 means there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub idempotent: bool,
    pub status_query: bool,
}

impl Capabilities {
    pub fn declared(downstream: &DownstreamPolicy) -> Capabilities {
        Capabilities {
            idempotent: downstream.idempotent,
            status_query: downstream.status_query,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

/// Whether the fleet-wide retry budget of the downstream allows one more retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetState {
    Available,
    Spent,
}

/// What the worker knows about the order beyond this call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    /// Cancelled or superseded while this step was in flight or deferred.
    pub cancelled: bool,
    /// The shipment was accepted earlier (payment re-checks after shipping).
    pub shipment_accepted: bool,
}

/// Everything [`decide`] reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionContext {
    pub stage: Stage,
    pub outcome: Outcome,
    /// In-process attempt of this delivery, 1-based.
    pub attempt: u32,
    /// Times this step was already deferred or re-checked on a delay tier.
    pub deferrals: u32,
    /// Since the stage's first attempt.
    #[serde(with = "humantime_serde")]
    pub elapsed: Duration,
    /// A status query already answered for this outcome.
    pub queried: bool,
    pub capabilities: Capabilities,
    pub budget: BudgetState,
    pub breaker: BreakerState,
    pub order: OrderFacts,
}

impl DecisionContext {
    /// A first attempt with the policy's declared capabilities, a closed
    /// breaker and budget to spare.
    pub fn first_attempt(policy: &Policy, stage: Stage, outcome: Outcome) -> DecisionContext {
        DecisionContext {
            stage,
            outcome,
            attempt: 1,
            deferrals: 0,
            elapsed: Duration::ZERO,
            queried: false,
            capabilities: Capabilities::declared(policy.downstream(stage)),
            budget: BudgetState::Available,
            breaker: BreakerState::Closed,
            order: OrderFacts::default(),
        }
    }
}

/// An earlier side effect to undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compensation {
    ReleaseReservation,
    RefundPayment,
}

/// What to do next with the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Decision {
    /// The step is done: record it and hand the order to the next stage.
    Proceed,
    /// Call again in this delivery after `delay` (plus jitter, if the policy says).
    RetryAfter {
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
    /// Ask the downstream by idempotency key what happened before deciding.
    QueryStatus,
    /// Re-send later with the same key, via delay tier `tier`.
    Defer {
        tier: usize,
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
    /// Keep the order `*_pending`; re-check by status query after `delay`.
    ParkPending {
        tier: usize,
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
    /// Stop with a clear reason; the order is rejected. Nothing to undo.
    FailFast { reason: String },
    /// Undo `steps` (a confirmed failure or cancellation), then end the order.
    Compensate {
        steps: Vec<Compensation>,
        reason: String,
    },
    /// Park for a business decision: exception queue, `blocked`.
    Block { reason: String },
    /// Hand to a person: exception queue, `escalated`.
    Escalate { reason: String },
}

impl Decision {
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Proceed => "proceed",
            Decision::RetryAfter { .. } => "retry_after",
            Decision::QueryStatus => "query_status",
            Decision::Defer { .. } => "defer",
            Decision::ParkPending { .. } => "park_pending",
            Decision::FailFast { .. } => "fail_fast",
            Decision::Compensate { .. } => "compensate",
            Decision::Block { .. } => "block",
            Decision::Escalate { .. } => "escalate",
        }
    }

    /// Sends the same operation to the downstream again.
    pub fn resends(&self) -> bool {
        matches!(self, Decision::RetryAfter { .. } | Decision::Defer { .. })
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |d: &Duration| humantime::format_duration(*d).to_string();
        match self {
            Decision::Proceed | Decision::QueryStatus => f.write_str(self.name()),
            Decision::RetryAfter { delay } => write!(f, "retry_after {}", show(delay)),
            Decision::Defer { tier, delay } => write!(f, "defer to tier {tier} ({})", show(delay)),
            Decision::ParkPending { tier, delay } => {
                write!(f, "park_pending, re-check on tier {tier} ({})", show(delay))
            }
            Decision::Compensate { steps, reason } => {
                let steps: Vec<&str> = steps
                    .iter()
                    .map(|s| match s {
                        Compensation::ReleaseReservation => "release_reservation",
                        Compensation::RefundPayment => "refund_payment",
                    })
                    .collect();
                write!(f, "compensate [{}]: {reason}", steps.join(", "))
            }
            Decision::FailFast { reason }
            | Decision::Block { reason }
            | Decision::Escalate { reason } => {
                write!(f, "{}: {reason}", self.name())
            }
        }
    }
}

/// A decision and the rule that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ruling {
    pub decision: Decision,
    pub rule: &'static str,
}

fn rule(rule: &'static str, decision: Decision) -> Ruling {
    Ruling { decision, rule }
}

/// The stage policy engine.
pub fn decide(policy: &Policy, ctx: &DecisionContext) -> Ruling {
    match policy.strategy {
        Strategy::StageAware => decide_stage_aware(policy, ctx),
        Strategy::Naive { retries } => decide_naive(retries, ctx),
    }
}

fn decide_stage_aware(policy: &Policy, ctx: &DecisionContext) -> Ruling {
    let outcome = &ctx.outcome;
    let known = outcome.certainty != Certainty::Unknown;

    if ctx.order.cancelled && known && !ctx.order.shipment_accepted {
        return cancelled(ctx);
    }
    if ctx.stage == Stage::Payment && ctx.order.shipment_accepted {
        return payment_after_shipment(policy, ctx);
    }
    if outcome.is_confirmed_success() {
        return rule("success.proceed", Decision::Proceed);
    }
    if outcome.certainty == Certainty::Unknown {
        return unknown(policy, ctx);
    }
    match outcome.class {
        FailureClass::BusinessRejection | FailureClass::Malformed => deterministic(ctx),
        FailureClass::Infrastructure => rule(
            "infrastructure.escalate",
            Decision::Escalate {
                reason: with_code("downstream_infrastructure", outcome),
            },
        ),
        FailureClass::Transient
        | FailureClass::Overloaded
        | FailureClass::RateLimited
        | FailureClass::Timeout
            if outcome.certainty == Certainty::NotApplied =>
        {
            retryable(policy, ctx)
        }
        // A failure class reported as applied (or success reported as not
        // applied) contradicts itself: ask rather than guess.
        _ => unknown(policy, ctx),
    }
}

fn with_code(reason: &str, outcome: &Outcome) -> String {
    match &outcome.code {
        Some(code) => format!("{reason}: {code}"),
        None => reason.to_owned(),
    }
}

fn cancelled(ctx: &DecisionContext) -> Ruling {
    let applied = ctx.outcome.is_confirmed_success();
    let mut steps = Vec::new();
    match ctx.stage {
        Stage::Inventory if applied => steps.push(Compensation::ReleaseReservation),
        Stage::Inventory => {}
        Stage::Payment if applied => steps.extend([
            Compensation::RefundPayment,
            Compensation::ReleaseReservation,
        ]),
        Stage::Payment => steps.push(Compensation::ReleaseReservation),
        Stage::Shipping if applied => {
            // The parcel is on its way: only a person can decide what now.
            return rule(
                "cancelled.after_shipment.block",
                Decision::Block {
                    reason: "cancel_after_shipment".into(),
                },
            );
        }
        Stage::Shipping => steps.extend([
            Compensation::RefundPayment,
            Compensation::ReleaseReservation,
        ]),
    }
    rule(
        "cancelled.compensate",
        Decision::Compensate {
            steps,
            reason: "cancelled".into(),
        },
    )
}

fn payment_after_shipment(policy: &Policy, ctx: &DecisionContext) -> Ruling {
    let outcome = &ctx.outcome;
    if outcome.is_confirmed_success() {
        return rule("success.proceed", Decision::Proceed);
    }
    if outcome.class == FailureClass::BusinessRejection {
        return rule(
            "payment.after_shipment.escalate",
            Decision::Escalate {
                reason: "payment_failed_after_shipment".into(),
            },
        );
    }
    // Anything else is not (yet) a confirmed failure: look again later.
    let sp = policy.stage(Stage::Payment);
    let (tier, delay) = sp.tier(ctx.deferrals);
    rule(
        "payment.after_shipment.recheck",
        Decision::ParkPending { tier, delay },
    )
}

fn deterministic(ctx: &DecisionContext) -> Ruling {
    let outcome = &ctx.outcome;
    match ctx.stage {
        Stage::Inventory => rule(
            "inventory.rejected.fail_fast",
            Decision::FailFast {
                reason: outcome
                    .code
                    .clone()
                    .unwrap_or_else(|| "inventory_rejected".into()),
            },
        ),
        Stage::Payment => rule(
            "payment.rejected.release",
            Decision::Compensate {
                steps: vec![Compensation::ReleaseReservation],
                reason: outcome
                    .code
                    .clone()
                    .unwrap_or_else(|| "payment_rejected".into()),
            },
        ),
        Stage::Shipping => rule(
            "shipping.refused.block",
            Decision::Block {
                reason: outcome
                    .code
                    .clone()
                    .unwrap_or_else(|| "shipment_refused".into()),
            },
        ),
    }
}

fn unknown(policy: &Policy, ctx: &DecisionContext) -> Ruling {
    let sp = policy.stage(ctx.stage);
    let caps = ctx.capabilities;
    if !caps.idempotent && !caps.status_query {
        return rule(
            "unknown.no_safe_retry.escalate",
            Decision::Escalate {
                reason: format!("{}_unknown_outcome_not_retryable", ctx.stage),
            },
        );
    }
    if caps.status_query && !ctx.queried {
        return rule("unknown.query_status", Decision::QueryStatus);
    }
    if ctx.elapsed >= sp.ambiguity_window {
        return rule(
            "unknown.ambiguity_window_passed.escalate",
            Decision::Escalate {
                reason: format!("{}_unresolved", ctx.stage),
            },
        );
    }
    let (tier, delay) = sp.tier(ctx.deferrals);
    // Re-sending is safe only with the same key on an idempotent downstream,
    // and only once the first request has surely finished.
    let resend = caps.idempotent && (sp.retry_unknown || !caps.status_query);
    if resend {
        rule(
            "unknown.deferred_retry_same_key",
            Decision::Defer {
                tier,
                delay: delay.max(sp.in_flight_window),
            },
        )
    } else {
        rule(
            "unknown.park_pending",
            Decision::ParkPending { tier, delay },
        )
    }
}

fn retryable(policy: &Policy, ctx: &DecisionContext) -> Ruling {
    let sp = policy.stage(ctx.stage);
    let dp = policy.downstream(ctx.stage);
    if ctx.breaker == BreakerState::Open || ctx.budget == BudgetState::Spent {
        return overloaded(sp, ctx);
    }
    let retry_after = ctx.outcome.retry_after.unwrap_or_default();
    if ctx.attempt < dp.retry.max_attempts && retry_after <= dp.retry.cap {
        return rule(
            "retryable.retry",
            Decision::RetryAfter {
                delay: dp.retry.backoff(ctx.attempt).max(retry_after),
            },
        );
    }
    defer_or_escalate(sp, ctx, "retryable.defer", retry_after)
}

fn overloaded(sp: &StagePolicy, ctx: &DecisionContext) -> Ruling {
    match sp.overload {
        Overload::Defer => defer_or_escalate(
            sp,
            ctx,
            "overload.defer",
            ctx.outcome.retry_after.unwrap_or_default(),
        ),
        Overload::FailFast => {
            let reason = format!("{}_unavailable_retry_later", ctx.stage);
            match ctx.stage {
                Stage::Inventory => rule("overload.fail_fast", Decision::FailFast { reason }),
                // The charge was certainly not made: release what is held.
                Stage::Payment => rule(
                    "overload.fail_fast",
                    Decision::Compensate {
                        steps: vec![Compensation::ReleaseReservation],
                        reason,
                    },
                ),
                // Paid orders are never rolled back for a shipping failure.
                Stage::Shipping => rule("overload.fail_fast", Decision::Block { reason }),
            }
        }
    }
}

/// The next delay tier at least as long as the downstream asked to wait, or
/// escalation once every tier was used or the ambiguity window has passed.
fn defer_or_escalate(
    sp: &StagePolicy,
    ctx: &DecisionContext,
    name: &'static str,
    at_least: Duration,
) -> Ruling {
    let exhausted = ctx.deferrals as usize >= sp.delay_tiers.len();
    if exhausted || ctx.elapsed >= sp.ambiguity_window {
        return rule(
            "retryable.exhausted.escalate",
            Decision::Escalate {
                reason: format!("{}_retries_exhausted", ctx.stage),
            },
        );
    }
    let first = ctx.deferrals as usize;
    let tier = (first..sp.delay_tiers.len())
        .find(|&i| sp.delay_tiers[i] >= at_least)
        .unwrap_or(sp.delay_tiers.len() - 1);
    rule(
        name,
        Decision::Defer {
            tier,
            delay: sp.delay_tiers[tier],
        },
    )
}

/// The baseline: retry everything at once, then roll back every earlier
/// stage, whatever the certainty. It double-charges and refunds on guesses;
/// that is what the benchmarks show.
fn decide_naive(retries: u32, ctx: &DecisionContext) -> Ruling {
    if ctx.outcome.is_confirmed_success() {
        return rule("naive.success.proceed", Decision::Proceed);
    }
    if ctx.attempt <= retries {
        return rule(
            "naive.retry",
            Decision::RetryAfter {
                delay: Duration::ZERO,
            },
        );
    }
    let steps = match ctx.stage {
        Stage::Inventory => vec![],
        Stage::Payment => vec![Compensation::ReleaseReservation],
        Stage::Shipping => vec![
            Compensation::RefundPayment,
            Compensation::ReleaseReservation,
        ],
    };
    rule(
        "naive.rollback",
        Decision::Compensate {
            steps,
            reason: format!("{}_failed", ctx.stage),
        },
    )
}

/// Where an accepted shipment is, as the shipping API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FulfilmentStep {
    Accepted,
    Picking,
    Packed,
    HandedOff,
    Delivered,
    Exception,
}

impl FulfilmentStep {
    pub const ALL: [FulfilmentStep; 6] = [
        FulfilmentStep::Accepted,
        FulfilmentStep::Picking,
        FulfilmentStep::Packed,
        FulfilmentStep::HandedOff,
        FulfilmentStep::Delivered,
        FulfilmentStep::Exception,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FulfilmentStep::Accepted => "accepted",
            FulfilmentStep::Picking => "picking",
            FulfilmentStep::Packed => "packed",
            FulfilmentStep::HandedOff => "handed_off",
            FulfilmentStep::Delivered => "delivered",
            FulfilmentStep::Exception => "exception",
        }
    }
}

impl FromStr for FulfilmentStep {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FulfilmentStep::ALL
            .into_iter()
            .find(|step| step.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = FulfilmentStep::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown fulfilment step `{s}`; expected one of: {}",
                    names.join(", ")
                )
            })
    }
}

/// The reconciler's decision for an accepted shipment: a synchronous
/// acceptance is not completion, so it is tracked to `delivered`.
pub fn track_fulfilment(policy: &Policy, step: FulfilmentStep, since_progress: Duration) -> Ruling {
    match step {
        FulfilmentStep::Delivered => rule("fulfilment.delivered", Decision::Proceed),
        FulfilmentStep::Exception => rule(
            "fulfilment.exception.escalate",
            Decision::Escalate {
                reason: "fulfilment_exception".into(),
            },
        ),
        _ if stalled(policy, since_progress) => rule(
            "fulfilment.stalled.escalate",
            Decision::Escalate {
                reason: "fulfilment_stalled".into(),
            },
        ),
        _ => poll_again(policy),
    }
}

/// The reconciler's decision when the shipment's status could not be read
/// (the status query answered 404 — the key forgotten past the carrier's
/// retention —, 5xx or 501, or the breaker refused it): not knowing where
/// a parcel is counts against the same stall threshold as a parcel that
/// does not move, so no accepted shipment is tracked forever.
pub fn track_unanswered_fulfilment(policy: &Policy, since_progress: Duration) -> Ruling {
    if stalled(policy, since_progress) {
        rule(
            "fulfilment.untracked.escalate",
            Decision::Escalate {
                reason: "fulfilment_untracked".into(),
            },
        )
    } else {
        poll_again(policy)
    }
}

fn stalled(policy: &Policy, since_progress: Duration) -> bool {
    since_progress >= policy.fulfilment.stall_after
}

fn poll_again(policy: &Policy) -> Ruling {
    rule(
        "fulfilment.poll",
        Decision::ParkPending {
            tier: 0,
            delay: policy.fulfilment.poll_interval,
        },
    )
}
