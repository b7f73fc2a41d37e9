//! What every stage shares: the context its decision is made in, the undo
//! of earlier steps a decision asks for, and the translation of a ruling
//! into the runtime's [`Effect`] (docs/stage-logic.md has the table).

use crate::Downstreams;
use crate::events::order_event;
use orderflow_core::decide::{DecisionContext, OrderFacts};
use orderflow_core::message::OrderPlaced;
use orderflow_core::{
    Certainty, Compensation, Decision, FailureClass, OrderState, Outcome, Policy, Ruling, Stage,
    decide,
};
use orderflow_downstream::{Answer, IdempotencyKey, Operation, Start};
use orderflow_runtime::{Effect, Emission, Env, Job, Planned};
use orderflow_store::{FieldUpdate, LastOutcome, OrderRecord};
use std::future::Future;
use std::time::Duration;

/// Where a stage sits in the order's life: the one description of a stage
/// the stage's run, the deadline check and the dry run of a replay read.
/// Which states it works on and where it leaves the order come from
/// [`Stage`] (`entry`, `pending`, `done`, `next`), the same table
/// [`OrderState::owner`] reads.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub stage: Stage,
    /// The audit event of a confirmed success.
    pub done_event: &'static str,
}

pub const INVENTORY: Shape = Shape {
    stage: Stage::Inventory,
    done_event: "inventory.reserved",
};

pub const PAYMENT: Shape = Shape {
    stage: Stage::Payment,
    done_event: "payment.succeeded",
};

pub const SHIPPING: Shape = Shape {
    stage: Stage::Shipping,
    done_event: "shipping.accepted",
};

impl Shape {
    pub fn of(stage: Stage) -> &'static Shape {
        match stage {
            Stage::Inventory => &INVENTORY,
            Stage::Payment => &PAYMENT,
            Stage::Shipping => &SHIPPING,
        }
    }

    /// The state the stage starts from.
    pub fn entry(&self) -> OrderState {
        self.stage.entry()
    }

    /// The state while its outcome is unknown.
    pub fn pending(&self) -> OrderState {
        self.stage.pending()
    }

    /// The state its confirmed success moves to.
    pub fn done(&self) -> OrderState {
        self.stage.done()
    }

    /// The downstream call an order in the stage's states waits for.
    pub fn operation(&self) -> Operation {
        Operation::work_of(self.stage)
    }

    /// Whether the stage's operation is what the order waits for.
    pub fn owns(&self, state: OrderState) -> bool {
        self.stage.works_on(state)
    }

    /// Whether the stage may already have sent its operation for the
    /// order: a later run, a rerun after the order moved, a pending state,
    /// or an outcome the stage reported before that may have taken effect
    /// (an operator's retry starts the run count again, but not that).
    /// Then it asks by key before it sends again or compensates. A later
    /// run that is the deferred copy of the run just before it, which
    /// ended knowing its operation was not applied (refused, rate limited,
    /// budget spent), has nothing to ask: no run since could have sent it.
    pub fn may_have_acted(&self, order: &OrderRecord, job: &Job) -> bool {
        (job.runs > 1 && !after_nothing_done(job))
            || job.reruns > 0
            || order.state == self.pending()
            || order.may_have_applied(self.stage)
    }

    /// How the operation starts this time.
    pub fn start(&self, policy: &Policy, order: &OrderRecord, job: &Job) -> Start {
        let can_ask = policy.downstream(self.stage).status_query;
        if can_ask && self.may_have_acted(order, job) {
            Start::Query
        } else {
            Start::Act
        }
    }

    /// The decision context of this run, before any answer.
    pub fn context(&self, policy: &Policy, order: &OrderRecord, job: &Job) -> DecisionContext {
        let placeholder = Outcome::new(FailureClass::Transient, Certainty::NotApplied);
        let mut ctx = DecisionContext::first_attempt(policy, self.stage, placeholder);
        ctx.deferrals = job.runs.saturating_sub(1);
        ctx.elapsed = job.elapsed.max(time_in_state(order));
        ctx.order = OrderFacts {
            cancelled: order.cancel_requested.is_some(),
            shipment_accepted: false,
        };
        ctx
    }

    /// The key of the stage's operation for the order.
    pub fn key(&self, order: &OrderRecord) -> IdempotencyKey {
        IdempotencyKey::new(&order.order_id, self.operation())
    }
}

/// The delivery is the deferred copy made by the run just before this one
/// (its `attempt` is this run's number), and that run ended knowing its
/// operation was not applied.
fn after_nothing_done(job: &Job) -> bool {
    job.meta.certainty == Some(Certainty::NotApplied) && job.meta.attempt == Some(job.runs)
}

/// Since the order's last move. A pending order re-checked by the
/// reconciler carries no first-attempt time, but has waited this long.
pub fn time_in_state(order: &OrderRecord) -> Duration {
    let since = jiff::Timestamp::now().duration_since(order.updated_at);
    Duration::try_from(since).unwrap_or_default()
}

/// The ruling for a cancelled order whose operation was never sent: its
/// outcome is known — nothing happened — so `decide` compensates.
pub fn never_sent(policy: &Policy, mut ctx: DecisionContext) -> Decided {
    let mut outcome = Outcome::new(FailureClass::Transient, Certainty::NotApplied);
    outcome.code = Some("not_sent".into());
    ctx.outcome = outcome;
    Decided {
        ruling: decide(policy, &ctx),
        ctx,
        made: None,
    }
}

/// What the reconciler asked for, if the delivery is its step message.
pub fn check_of(job: &Job) -> Option<orderflow_runtime::Check> {
    serde_json::from_slice::<orderflow_runtime::StepMessage>(&job.body)
        .ok()
        .and_then(|step| step.check)
}

/// The order as the producer placed it, stored with the order at ingress;
/// unreadable (only a bug or tampering), the order is escalated.
pub fn placed(order: &OrderRecord) -> Result<OrderPlaced, Box<Effect>> {
    serde_json::from_value(order.body.clone()).map_err(|err| {
        Box::new(escalate(
            "order_unreadable",
            None,
            Some(format!("the stored order body is unreadable: {err}")),
            "order.unreadable.escalate",
            vec![],
        ))
    })
}

/// Whether a call that must eventually succeed (an undo, a commit) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    Confirmed,
    /// Not confirmed yet (the downstream did not answer): try again later.
    NotYet(String),
    /// The downstream refused it for good: a person must look.
    Refused(String),
}

/// Releases and refunds what `steps` name, each with its own
/// deterministic key, so repeating an undo after a crash is harmless.
/// `made` is the id the running stage's own operation just produced.
pub async fn undo(
    downstreams: &Downstreams,
    env: &Env,
    order: &OrderRecord,
    steps: &[Compensation],
    made: Option<(Stage, &str)>,
) -> Confirmation {
    for step in steps {
        let (operation, stage) = match step {
            Compensation::ReleaseReservation => (Operation::Release, Stage::Inventory),
            Compensation::RefundPayment => (Operation::Refund, Stage::Payment),
        };
        let id = match made {
            Some((by, id)) if by == stage => Some(id.to_owned()),
            _ => order.downstream_ids.get(&stage).cloned(),
        };
        // Nothing was made, so there is nothing to undo.
        let Some(id) = id else { continue };
        let key = IdempotencyKey::new(&order.order_id, operation);
        let retry = &env.policy.downstream(stage).retry;
        let result = with_retries(retry.max_attempts, retry.base, || async {
            match step {
                Compensation::ReleaseReservation => {
                    downstreams.inventory.release(&key, &id).await.outcome
                }
                Compensation::RefundPayment => downstreams.payment.refund(&key, &id).await.outcome,
            }
        })
        .await;
        match result {
            Confirmation::Confirmed => {}
            other => return other.with_context(operation),
        }
    }
    Confirmation::Confirmed
}

impl Confirmation {
    fn with_context(self, operation: Operation) -> Confirmation {
        match self {
            Confirmation::Confirmed => Confirmation::Confirmed,
            Confirmation::NotYet(detail) => {
                Confirmation::NotYet(format!("{}: {detail}", operation.as_str()))
            }
            Confirmation::Refused(detail) => {
                Confirmation::Refused(format!("{}: {detail}", operation.as_str()))
            }
        }
    }
}

/// Calls until the outcome is a confirmed success, a deterministic
/// refusal, or `attempts` are used.
pub async fn with_retries<F, Fut>(attempts: u32, base: Duration, mut call: F) -> Confirmation
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        let outcome = call().await;
        if outcome.is_confirmed_success() {
            return Confirmation::Confirmed;
        }
        let detail = format!(
            "{} / {}{}",
            outcome.class.as_str(),
            outcome.certainty.as_str(),
            outcome.code.map(|c| format!(" ({c})")).unwrap_or_default()
        );
        if outcome.class == FailureClass::BusinessRejection {
            return Confirmation::Refused(detail);
        }
        last = detail;
        if attempt < attempts {
            tokio::time::sleep(base * attempt).await;
        }
    }
    Confirmation::NotYet(last)
}

/// What the stage's operation came to.
pub struct Decided {
    pub ruling: Ruling,
    pub ctx: DecisionContext,
    /// The id the operation produced (reservation, payment, shipment).
    pub made: Option<String>,
}

impl Decided {
    pub fn from_answer<T>(
        ruling: Ruling,
        ctx: DecisionContext,
        answer: &Answer<T>,
        id: impl Fn(&T) -> &str,
    ) -> Decided {
        Decided {
            ruling,
            ctx,
            made: answer.body.as_ref().map(|body| id(body).to_owned()),
        }
    }
}

/// Turns a ruling into the effect the runtime records and publishes.
/// `undone` is how the compensation the ruling asked for went, if any.
pub fn effect(
    shape: &Shape,
    policy: &Policy,
    order: &OrderRecord,
    decided: &Decided,
    undone: Option<&Confirmation>,
) -> Effect {
    let Decided { ruling, ctx, made } = decided;
    let outcome = &ctx.outcome;
    let rule = ruling.rule;
    let last = FieldUpdate::LastOutcome {
        stage: shape.stage,
        outcome: LastOutcome {
            class: outcome.class,
            certainty: outcome.certainty,
        },
    };
    let stage = shape.stage;
    match &ruling.decision {
        Decision::Proceed => {
            let mut fields = vec![last];
            if let Some(id) = made {
                fields.push(FieldUpdate::DownstreamId {
                    stage,
                    id: id.clone(),
                });
            }
            let mut emissions: Vec<Emission> = shape
                .stage
                .next()
                .map(|stage| Emission::Next { stage })
                .into_iter()
                .collect();
            emissions.push(order_event(shape.done(), None));
            Effect {
                transition: Some(planned(shape.done(), None, shape.done_event, rule, fields)),
                emissions,
                note: None,
            }
        }
        Decision::FailFast { reason } => end(
            OrderState::Rejected,
            reason,
            &format!("{stage}.rejected"),
            rule,
            vec![last],
        ),
        Decision::Compensate { steps: _, reason } => match undone {
            Some(Confirmation::NotYet(detail)) => later(
                policy,
                shape,
                order,
                ctx.deferrals,
                &format!("compensation not confirmed: {detail}"),
                rule,
            ),
            Some(Confirmation::Refused(detail)) => escalate(
                "compensation_refused",
                Some(outcome.clone()),
                Some(detail.clone()),
                rule,
                vec![last],
            ),
            Some(Confirmation::Confirmed) | None => {
                let cancelled = order.cancel_requested.is_some()
                    || matches!(order.state, OrderState::Paid | OrderState::ShippingPending);
                let (to, reason) = if cancelled {
                    let why = order
                        .cancel_requested
                        .clone()
                        .unwrap_or_else(|| reason.clone());
                    (OrderState::Cancelled, why)
                } else {
                    (OrderState::Rejected, reason.clone())
                };
                end(
                    to,
                    &reason,
                    &format!("{stage}.compensated"),
                    rule,
                    vec![last],
                )
            }
        },
        Decision::Defer { tier, delay } | Decision::ParkPending { tier, delay } => {
            let tier = tier_at_least(policy, stage, *tier, *delay);
            let parks = matches!(ruling.decision, Decision::ParkPending { .. })
                || outcome.certainty == Certainty::Unknown;
            let reason = format!(
                "{} / {}{}",
                outcome.class.as_str(),
                outcome.certainty.as_str(),
                outcome
                    .code
                    .as_ref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            );
            let emissions = vec![Emission::Delay {
                tier,
                certainty: Some(outcome.certainty),
            }];
            if parks && order.state == shape.entry() {
                let mut emissions = emissions;
                emissions.push(order_event(shape.pending(), None));
                Effect {
                    transition: Some(planned(
                        shape.pending(),
                        Some(reason),
                        &format!("{stage}.outcome_unknown"),
                        rule,
                        vec![last],
                    )),
                    emissions,
                    note: None,
                }
            } else {
                Effect {
                    transition: None,
                    emissions,
                    note: Some(planned(
                        order.state,
                        Some(reason),
                        &format!("{stage}.{}", ruling.decision.name()),
                        rule,
                        vec![],
                    )),
                }
            }
        }
        Decision::Block { reason } => {
            // A shipment found accepted for a cancelled order stands: it
            // is recorded, so a person's refund does not also release the
            // stock the carrier holds.
            let mut fields = vec![last];
            if let Some(id) = made {
                fields.push(FieldUpdate::DownstreamId {
                    stage,
                    id: id.clone(),
                });
            }
            block(
                reason,
                Some(outcome.clone()),
                &format!("{stage}.blocked"),
                rule,
                fields,
            )
        }
        Decision::Escalate { reason } => {
            escalate(reason, Some(outcome.clone()), None, rule, vec![last])
        }
        // `resolve` acts on these itself and never returns them; should one
        // come back, look again later rather than guess.
        Decision::RetryAfter { .. } | Decision::QueryStatus => later(
            policy,
            shape,
            order,
            ctx.deferrals,
            "undecided: asked to retry or query",
            rule,
        ),
    }
}

/// Escalated with the reason, parked in the exception queue, announced.
pub fn escalate(
    reason: &str,
    outcome: Option<Outcome>,
    detail: Option<String>,
    rule: &str,
    fields: Vec<FieldUpdate>,
) -> Effect {
    let mut effect = end(OrderState::Escalated, reason, "escalated", rule, fields);
    effect.emissions.insert(
        0,
        Emission::Exception {
            reason: reason_name(reason).to_owned(),
            outcome,
            detail: detail.or_else(|| Some(reason.to_owned())),
            keep_original: false,
        },
    );
    effect
}

/// An order whose store lost writes it had acknowledged: escalated for a
/// person with what was lost, and announced like any escalation.
pub fn lost_writes(detail: String) -> Effect {
    let mut effect = orderflow_runtime::lost::escalation(detail);
    effect.emissions.push(order_event(
        OrderState::Escalated,
        Some(orderflow_runtime::lost::REASON),
    ));
    effect
}

/// Blocked for a business decision, parked in the exception queue,
/// announced.
pub fn block(
    reason: &str,
    outcome: Option<Outcome>,
    event: &str,
    rule: &str,
    fields: Vec<FieldUpdate>,
) -> Effect {
    let mut effect = end(OrderState::Blocked, reason, event, rule, fields);
    effect.emissions.insert(
        0,
        Emission::Exception {
            reason: reason_name(reason).to_owned(),
            outcome,
            detail: Some(reason.to_owned()),
            keep_original: false,
        },
    );
    effect
}

/// An exception-queue reason is the reason without the provider code.
fn reason_name(reason: &str) -> &str {
    reason.split(':').next().unwrap_or(reason).trim()
}

/// A move to a state the order rests in, and its customer event.
pub fn end(
    to: OrderState,
    reason: &str,
    event: &str,
    rule: &str,
    fields: Vec<FieldUpdate>,
) -> Effect {
    Effect {
        transition: Some(planned(to, Some(reason.to_owned()), event, rule, fields)),
        emissions: vec![order_event(to, Some(reason))],
        note: None,
    }
}

/// Nothing moves; the stage looks again after its next delay tier.
fn later(
    policy: &Policy,
    shape: &Shape,
    order: &OrderRecord,
    deferrals: u32,
    why: &str,
    rule: &str,
) -> Effect {
    let (tier, _) = policy.stage(shape.stage).tier(deferrals);
    Effect {
        transition: None,
        emissions: vec![Emission::Delay {
            tier: u32::try_from(tier).unwrap_or(u32::MAX),
            certainty: None,
        }],
        note: Some(planned(
            order.state,
            Some(why.to_owned()),
            &format!("{}.later", shape.stage),
            rule,
            vec![],
        )),
    }
}

pub fn planned(
    to: OrderState,
    reason: Option<String>,
    event: &str,
    rule: &str,
    fields: Vec<FieldUpdate>,
) -> Planned {
    Planned {
        to,
        reason,
        event: event.to_owned(),
        rule: rule.to_owned(),
        fields,
    }
}

/// The first tier from `from` on that waits at least `delay` (a deferred
/// re-send must wait out the in-flight window), else the last.
fn tier_at_least(policy: &Policy, stage: Stage, from: usize, delay: Duration) -> u32 {
    let tiers = &policy.stage(stage).delay_tiers;
    let tier = (from..tiers.len())
        .find(|&i| tiers[i] >= delay)
        .unwrap_or(tiers.len().saturating_sub(1));
    u32::try_from(tier).unwrap_or(u32::MAX)
}

/// Runs the stage's operation to a ruling: sends it (or asks first when it
/// may have been sent, `start`), retries and re-asks as the policy says.
/// `ctx` is the run's context ([`Shape::context`]).
pub async fn operate<T, A, AF, Q, QF>(
    env: &Env,
    downstream: &orderflow_downstream::Downstream,
    start: Start,
    ctx: DecisionContext,
    calls: (A, Q),
    id: impl Fn(&T) -> &str,
) -> Result<Decided, orderflow_runtime::Error>
where
    A: FnMut() -> AF,
    AF: Future<Output = Answer<T>>,
    Q: FnMut() -> QF,
    QF: Future<Output = Answer<T>>,
{
    let (act, query) = calls;
    let resolution =
        orderflow_downstream::resolve(&env.policy, &env.store, downstream, ctx, start, act, query)
            .await?;
    Ok(Decided::from_answer(
        resolution.ruling,
        resolution.context,
        &resolution.answer,
        id,
    ))
}

/// Logs the decision, undoes what it asks to undo, and returns its effect.
pub async fn conclude(
    shape: &Shape,
    env: &Env,
    downstreams: &Downstreams,
    order: &OrderRecord,
    job: &Job,
    decided: &Decided,
) -> Effect {
    crate::observe::decision(env, order, job, &decided.ctx, &decided.ruling);
    let undone = match &decided.ruling.decision {
        Decision::Compensate { steps, .. } => {
            let made = decided.made.as_deref().map(|id| (shape.stage, id));
            Some(undo(downstreams, env, order, steps, made).await)
        }
        _ => None,
    };
    let effect = effect(shape, &env.policy, order, decided, undone.as_ref());
    crate::route::announced(shape, order, job, effect)
}

/// Commits the order's reservation (the stock is sold), with its own key.
pub async fn commit_reservation(
    downstreams: &Downstreams,
    env: &Env,
    order: &OrderRecord,
) -> Result<(), String> {
    let Some(id) = order.downstream_ids.get(&Stage::Inventory) else {
        return Err("the order has no reservation id".into());
    };
    let key = IdempotencyKey::new(&order.order_id, Operation::Commit);
    let retry = &env.policy.downstream(Stage::Inventory).retry;
    let result = with_retries(retry.max_attempts, retry.base, || async {
        downstreams.inventory.commit(&key, id).await.outcome
    })
    .await;
    match result {
        Confirmation::Confirmed => Ok(()),
        Confirmation::NotYet(detail) | Confirmation::Refused(detail) => {
            Err(format!("commit: {detail}"))
        }
    }
}
