//! Manual resolution: resolve a payment, retry a stage, cancel, unblock.
//!
//! Every action needs a reason and an operator, and is idempotent by its
//! action id. It is written the way a stage worker writes, through the
//! runtime's one write path (`orderflow_runtime::write`): take the
//! order's stage lease (a worker holding it → [`Error::Busy`]), read the
//! order and decide under it (an unsafe state → [`Error::Refused`], nothing
//! done), make and confirm the compensations, then one compare-and-set
//! transition carries the state, the audit entry (actor
//! `operator:<name>`, reason, policy id, the order's correlation id) and
//! the action's record under `action:<id>` — fenced by the lease. Only
//! then are the rendered messages published (confirmed). The same action
//! id again finds the record and publishes its messages again instead of
//! acting twice, so a command interrupted after the move is finished by
//! running it again.

use crate::error::{Error, Result};
use crate::orders::escalated_from;
use crate::plans::{self, CancelRoute, Decision, PaymentCheck, PaymentOutcome, Plan};
use crate::target::{Target, parse_order_id};
use orderflow_broker::names::ORDER_CANCEL;
use orderflow_broker::{Meta, Outgoing};
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Stage};
use orderflow_downstream::api::PaymentStatus;
use orderflow_downstream::{IdempotencyKey, Operation};
use orderflow_runtime::Planned;
use orderflow_runtime::effect::{RenderContext, Rendered, render};
use orderflow_runtime::write::{Writer, Written, publish_confirmed};
use orderflow_stages::Confirmation;
use orderflow_store::{AuditEntry, CancelRequest, FieldUpdate, Lease, Note, OrderRecord};
use serde::{Deserialize, Serialize};

/// The longest reason accepted (an `order.cancel/v1` carries it).
const MAX_REASON: usize = 512;

/// A fresh action id, made the way an action without one gets it: a page
/// renders one into each action form, so a double submit or a re-post
/// acts once. Time-ordered (UUID v7), so ids sort by when they were made.
pub fn new_action_id() -> String {
    format!("act-{}", uuid::Uuid::now_v7().simple())
}

/// Who does what to which order, and why.
#[derive(Debug, Clone)]
pub struct ActionInput {
    pub order_id: String,
    pub reason: String,
    /// The person acting; audited as `operator:<operator>`.
    pub operator: String,
    /// Makes the action idempotent: the same id acts once. Generated when
    /// `None` (and reported, so it can be given again).
    pub action_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    ResolvePayment,
    Retry,
    Cancel,
    Unblock,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::ResolvePayment => "resolve_payment",
            ActionKind::Retry => "retry",
            ActionKind::Cancel => "cancel",
            ActionKind::Unblock => "unblock",
        }
    }
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Done {
    /// The order moved now.
    Acted,
    /// This action id had acted before: nothing was done again, its
    /// messages were published again.
    Repeated,
    /// A cancellation was handed to the fleet, whose owning stage carries
    /// it out.
    Requested,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionReport {
    pub action: ActionKind,
    pub action_id: String,
    pub order_id: String,
    pub done: Done,
    pub actor: String,
    pub reason: String,
    pub from: OrderState,
    /// `None` when the fleet will move the order (a requested cancel).
    pub to: Option<OrderState>,
    /// The order's version after the move.
    pub version: Option<u64>,
    /// Compensations made and confirmed before the move.
    pub compensations: Vec<String>,
    pub published: Vec<Published>,
    pub notes: Vec<String>,
}

/// A message published (and confirmed) by an action.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// `""` is the default exchange (straight to a queue).
    pub exchange: String,
    pub routing_key: String,
    pub message_id: Option<String>,
}

impl Published {
    fn of(message: &Outgoing) -> Published {
        Published {
            exchange: message.exchange.clone(),
            routing_key: message.routing_key.clone(),
            message_id: message.meta.message_id.clone(),
        }
    }
}

/// What an action records with its move, under `action:<id>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ActionRecord {
    action: ActionKind,
    from: OrderState,
    to: OrderState,
    version: u64,
    actor: String,
    reason: String,
    compensations: Vec<String>,
    notes: Vec<String>,
    messages: Vec<Rendered>,
}

/// `orderctl order resolve ID --stage payment --outcome succeeded|failed`:
/// after checking with the provider. Succeeded → `paid` and on to
/// shipping (the payment id from `payment_id`, else from the provider);
/// failed → the reservation released → `rejected`. Refused when the
/// provider contradicts the operator, and after shipping.
pub async fn resolve_payment(
    target: &Target,
    input: &ActionInput,
    outcome: PaymentOutcome,
    payment_id: Option<String>,
) -> Result<ActionReport> {
    if payment_id.is_some() && outcome == PaymentOutcome::Failed {
        return Err(Error::Invalid(
            "a payment id goes with --outcome succeeded only".to_owned(),
        ));
    }
    let action = Action::new(target, ActionKind::ResolvePayment, input)?;
    action
        .act(Stage::Payment, |order, from| {
            plans::resolve_payment(order, from, outcome, payment_id.clone(), &action.reason)
        })
        .await
}

/// `orderctl order retry ID --stage S`: an escalated or blocked order back
/// to the stage's entry state, its run counter reset, a step message to
/// the stage's work queue. Where the stage's operation may have taken
/// effect, the stage asks the provider by key first; refused when the
/// provider cannot answer (`plans::retry`).
pub async fn retry(target: &Target, input: &ActionInput, stage: Stage) -> Result<ActionReport> {
    let action = Action::new(target, ActionKind::Retry, input)?;
    let policy = target.policy().clone();
    action
        .act(stage, |order, from| {
            plans::retry(order, from, stage, &policy, jiff::Timestamp::now())
        })
        .await
}

/// `orderctl order unblock ID --decision ship|refund` for a blocked order.
pub async fn unblock(
    target: &Target,
    input: &ActionInput,
    decision: Decision,
) -> Result<ActionReport> {
    let action = Action::new(target, ActionKind::Unblock, input)?;
    action
        .act(Stage::Shipping, |order, _| {
            plans::unblock(order, decision, &action.reason)
        })
        .await
}

/// Who would carry out a cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelBy {
    /// The owning stage, told by an `order.cancel/v1`.
    Fleet,
    /// The operator's command itself (blocked and escalated orders).
    Operator,
    /// Nobody: unsafe or pointless in this state.
    Refused,
}

/// What cancelling the order would do, by its current state.
#[derive(Debug, Clone, Serialize)]
pub struct CancelPlan {
    pub order_id: String,
    pub state: OrderState,
    pub by: CancelBy,
    pub steps: Vec<String>,
    /// Why it is refused, when it is.
    pub refusal: Option<String>,
}

/// The compensation plan of `orderctl order cancel` without `--yes`:
/// changes nothing.
pub async fn cancel_plan(target: &Target, order_id: &str) -> Result<CancelPlan> {
    let order_id = parse_order_id(order_id)?;
    let (order, audit) = read(target, &order_id).await?;
    let route = plans::cancel(&order, escalated_from(&order, &audit), "", target.policy());
    Ok(describe_cancel(&order, &route))
}

fn describe_cancel(order: &OrderRecord, route: &CancelRoute) -> CancelPlan {
    let (by, steps, refusal) = match route {
        CancelRoute::Fleet(steps) => (CancelBy::Fleet, steps.clone(), None),
        CancelRoute::Operator(plan) => {
            let mut steps: Vec<String> = plan
                .undo
                .iter()
                .filter_map(|step| plans::describe(order, *step))
                .collect();
            if steps.is_empty() {
                steps.push("nothing was charged or reserved: nothing to undo".to_owned());
            }
            steps.extend(plan.notes.iter().cloned());
            steps.push(format!("→ {}", plan.to));
            (CancelBy::Operator, steps, None)
        }
        CancelRoute::Refused(why) => (CancelBy::Refused, Vec::new(), Some(why.clone())),
    };
    CancelPlan {
        order_id: order.order_id.to_string(),
        state: order.state,
        by,
        steps,
        refusal,
    }
}

/// `orderctl order cancel ID --yes`. In flight: the request is recorded on
/// the order (audited with the operator) and an `order.cancel/v1` goes to
/// the ingress exchange, so the owning stage compensates once its outcome
/// is known. Blocked or escalated: refund and release here, → `cancelled`.
/// Ended orders, and escalations whose outcome is unknown, are refused.
pub async fn cancel(target: &Target, input: &ActionInput) -> Result<ActionReport> {
    let action = Action::new(target, ActionKind::Cancel, input)?;
    if let Some(record) = action.recorded().await? {
        return action.repeat(record).await;
    }
    let (order, audit) = read(target, &action.order_id).await?;
    let from = escalated_from(&order, &audit);
    match plans::cancel(&order, from, &action.reason, target.policy()) {
        CancelRoute::Refused(why) => Err(Error::Refused(why)),
        CancelRoute::Fleet(_) => action.request_cancel(&order).await,
        CancelRoute::Operator(_) => {
            let stage = from.and_then(OrderState::owner).unwrap_or(Stage::Shipping);
            action
                .act(stage, |order, from| match plans::cancel(order, from, &action.reason, target.policy()) {
                    CancelRoute::Operator(plan) => Ok(plan),
                    CancelRoute::Refused(why) => Err(why),
                    CancelRoute::Fleet(_) => Err(format!(
                        "order {} moved back into the fleet's hands ({}); run the command again to hand the cancellation to it",
                        order.order_id, order.state
                    )),
                })
                .await
        }
    }
}

async fn read(target: &Target, order_id: &OrderId) -> Result<(OrderRecord, Vec<AuditEntry>)> {
    let order = target.order(order_id).await?;
    let audit = target
        .store()
        .order_audit(order_id)
        .await
        .map_err(Error::store(format!("cannot read the audit of {order_id}")))?;
    Ok((order, audit))
}

/// One action being carried out.
struct Action<'a> {
    target: &'a Target,
    kind: ActionKind,
    order_id: OrderId,
    action_id: String,
    /// `operator:<name>`.
    actor: String,
    reason: String,
}

impl<'a> Action<'a> {
    fn new(target: &'a Target, kind: ActionKind, input: &ActionInput) -> Result<Action<'a>> {
        let order_id = parse_order_id(&input.order_id)?;
        let reason = input.reason.trim();
        if reason.is_empty() {
            return Err(Error::Invalid(
                "a reason is required: say why, for the audit".to_owned(),
            ));
        }
        if reason.chars().count() > MAX_REASON {
            return Err(Error::Invalid(format!(
                "the reason is longer than {MAX_REASON} characters"
            )));
        }
        let operator = input.operator.trim();
        if operator.is_empty() {
            return Err(Error::Invalid(
                "who is acting? give the operator's name (orderctl: --actor, ORDERFLOW_ACTOR or $USER)"
                    .to_owned(),
            ));
        }
        let action_id = match &input.action_id {
            Some(id) => {
                let valid = (1..=64).contains(&id.len())
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
                if !valid {
                    return Err(Error::Invalid(format!(
                        "action id `{id}`: use 1-64 characters of A-Z, a-z, 0-9, _, - and ."
                    )));
                }
                id.clone()
            }
            None => new_action_id(),
        };
        Ok(Action {
            target,
            kind,
            order_id,
            action_id,
            actor: format!("operator:{operator}"),
            reason: reason.to_owned(),
        })
    }

    fn step(&self) -> String {
        format!("action:{}", self.action_id)
    }

    /// This action id's record on the order, if it acted before.
    async fn recorded(&self) -> Result<Option<ActionRecord>> {
        let store = self.target.store();
        let step = self.step();
        for stage in Stage::ALL {
            let found = store
                .get_step_result(&self.order_id, stage, &step)
                .await
                .map_err(Error::store(format!(
                    "cannot read the record of action {}",
                    self.action_id
                )))?;
            let Some(found) = found else { continue };
            let record: ActionRecord = serde_json::from_value(found).map_err(|e| {
                Error::Invalid(format!(
                    "action {} has an unreadable record on order {} ({e}); use another action id",
                    self.action_id, self.order_id
                ))
            })?;
            if record.action != self.kind {
                return Err(Error::Invalid(format!(
                    "action id {} was used for a {} of order {}; use another action id",
                    self.action_id,
                    record.action.as_str(),
                    self.order_id
                )));
            }
            return Ok(Some(record));
        }
        Ok(None)
    }

    /// The action acted before: publish its messages again.
    async fn repeat(&self, record: ActionRecord) -> Result<ActionReport> {
        let messages: Vec<Outgoing> = record
            .messages
            .into_iter()
            .map(Rendered::into_outgoing)
            .collect();
        let published = self.publish(messages).await?;
        let mut notes = record.notes;
        notes.push(format!(
            "action {} was carried out before by {}; nothing was done again, its messages were sent again",
            self.action_id, record.actor
        ));
        Ok(ActionReport {
            action: self.kind,
            action_id: self.action_id.clone(),
            order_id: self.order_id.to_string(),
            done: Done::Repeated,
            actor: record.actor,
            reason: record.reason,
            from: record.from,
            to: Some(record.to),
            version: Some(record.version),
            compensations: record.compensations,
            published,
            notes,
        })
    }

    /// Takes the `stage` lease, plans under it, compensates, moves the
    /// order with the action's record, then publishes.
    async fn act<F>(&self, stage: Stage, plan: F) -> Result<ActionReport>
    where
        F: Fn(&OrderRecord, Option<OrderState>) -> Result<Plan, plans::Refusal>,
    {
        if let Some(record) = self.recorded().await? {
            return self.repeat(record).await;
        }
        // Fail on an unknown order before taking any lease.
        self.target.order(&self.order_id).await?;
        let store = self.target.store();
        let ttl = self.target.policy().lease.ttl;
        let token = format!("{}/{}", self.actor, self.action_id);
        let lease = store
            .acquire_lease(&self.order_id, stage, &token, ttl)
            .await
            .map_err(Error::store(format!(
                "cannot take the lease of {}",
                self.order_id
            )))?
            .ok_or_else(|| Error::Busy {
                order_id: self.order_id.to_string(),
                stage,
            })?;
        let keeper = store.keep_alive(&lease, ttl);
        let acted = self.under_lease(stage, &lease, plan).await;
        keeper.stop();
        if !matches!(acted, Ok((_, true))) {
            // The move drops the lease itself; otherwise give it back.
            let _ = store.release(&lease).await;
        }
        let (report, _) = acted?;
        Ok(report)
    }

    /// The action with the lease held; `true` once the move (which drops
    /// the lease) was written.
    async fn under_lease<F>(
        &self,
        stage: Stage,
        lease: &Lease,
        plan: F,
    ) -> Result<(ActionReport, bool)>
    where
        F: Fn(&OrderRecord, Option<OrderState>) -> Result<Plan, plans::Refusal>,
    {
        // Another run of this action id may have finished meanwhile.
        if let Some(record) = self.recorded().await? {
            return Ok((self.repeat(record).await?, false));
        }
        let (order, audit) = read(self.target, &self.order_id).await?;
        let mut plan = plan(&order, escalated_from(&order, &audit)).map_err(Error::Refused)?;
        if let Some(check) = plan.check.clone() {
            self.check_payment(&order, &check, &mut plan).await?;
        }
        let compensations = self.compensate(&order, &plan).await?;
        if let Some(reset) = plan.reset {
            self.target
                .store()
                .reset_attempts(&self.order_id, reset)
                .await
                .map_err(Error::store("cannot reset the run counter"))?;
        }

        let version = order.version + 1;
        let rendered = self.render(&order, stage, &plan);
        let record = ActionRecord {
            action: self.kind,
            from: order.state,
            to: plan.to,
            version,
            actor: self.actor.clone(),
            reason: self.reason.clone(),
            compensations: compensations.clone(),
            notes: plan.notes.clone(),
            messages: rendered.clone(),
        };
        let step = self.step();
        let writer = Writer {
            store: self.target.store(),
            stage,
            fencing: lease.fencing,
            step: &step,
            actor: &self.actor,
            correlation_id: &order.correlation_id,
            policy_id: self.target.policy_id(),
        };
        let planned = Planned {
            to: plan.to,
            reason: Some(self.reason.clone()),
            event: plan.event.to_owned(),
            rule: step.clone(),
            fields: plan.fields.clone(),
        };
        let record = serde_json::to_value(&record).expect("an action record serializes");
        match writer.transition(&order, &planned, record).await {
            Ok(Written::Done) => {}
            Ok(Written::LeaseLost) => {
                return Err(Error::Busy {
                    order_id: self.order_id.to_string(),
                    stage,
                });
            }
            Ok(Written::AlreadyRecorded(record)) => {
                // Our own write landed before an error: finish it.
                let record = serde_json::from_value(record).map_err(|e| {
                    Error::Invalid(format!(
                        "action {} has an unreadable record on order {} ({e}); use another action id",
                        self.action_id, self.order_id
                    ))
                })?;
                return Ok((self.repeat(record).await?, true));
            }
            Ok(Written::Moved { state }) => {
                return Err(Error::Moved {
                    order_id: self.order_id.to_string(),
                    state,
                });
            }
            Err(orderflow_store::Error::Transition(err)) => {
                return Err(Error::Refused(err.to_string()));
            }
            Err(err) => {
                return Err(Error::store(format!("cannot move order {}", self.order_id))(err));
            }
        }
        let published = self
            .publish(rendered.into_iter().map(Rendered::into_outgoing).collect())
            .await?;
        Ok((
            ActionReport {
                action: self.kind,
                action_id: self.action_id.clone(),
                order_id: self.order_id.to_string(),
                done: Done::Acted,
                actor: self.actor.clone(),
                reason: self.reason.clone(),
                from: order.state,
                to: Some(plan.to),
                version: Some(version),
                compensations,
                published,
                notes: plan.notes,
            },
            true,
        ))
    }

    /// Asks the payment provider about the order's charge; a contradiction
    /// refuses the action.
    async fn check_payment(
        &self,
        order: &OrderRecord,
        check: &PaymentCheck,
        plan: &mut Plan,
    ) -> Result<()> {
        if let PaymentCheck::Succeeded { given: Some(id) } = check {
            plan.fields.push(FieldUpdate::DownstreamId {
                stage: Stage::Payment,
                id: id.clone(),
            });
            return Ok(());
        }
        let api = &self.target.downstreams()?.payment;
        let key = IdempotencyKey::new(&order.order_id, Operation::Charge);
        let answer = api.payment(&key).await;
        let seen = match &answer.body {
            Some(payment) => Seen::Charge {
                id: payment.payment_id.clone(),
                status: payment.status,
            },
            None if answer.outcome.code.as_deref() == Some("not_found") => Seen::NotFound,
            None => Seen::Unknown(format!(
                "{} / {}{}",
                answer.outcome.class.as_str(),
                answer.outcome.certainty.as_str(),
                answer
                    .outcome
                    .code
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            )),
        };
        let id = &order.order_id;
        match (check, seen) {
            (
                PaymentCheck::Succeeded { .. },
                Seen::Charge {
                    id: payment,
                    status,
                },
            ) => match status {
                PaymentStatus::Succeeded => {
                    plan.fields.push(FieldUpdate::DownstreamId {
                        stage: Stage::Payment,
                        id: payment,
                    });
                    Ok(())
                }
                PaymentStatus::Processing => Err(Error::Refused(format!(
                    "the provider still reports charge {payment} of order {id} as processing: wait until it settles, then resolve"
                ))),
                other @ (PaymentStatus::Failed | PaymentStatus::Refunded) => {
                    Err(Error::Refused(format!(
                        "the provider reports charge {payment} of order {id} as {other}, not succeeded: resolve with --outcome failed, or check again"
                    )))
                }
            },
            (PaymentCheck::Succeeded { .. }, Seen::NotFound) => Err(Error::Refused(format!(
                "the provider has no charge under order {id}'s key ({key}): if the customer paid another way, give that payment's id with --payment-id"
            ))),
            (PaymentCheck::Succeeded { .. }, Seen::Unknown(detail)) => {
                Err(Error::Downstream(format!(
                    "cannot confirm the charge of order {id} with the provider ({detail}); nothing was changed: try again, or give the payment id you checked with --payment-id"
                )))
            }
            (
                PaymentCheck::Failed,
                Seen::Charge {
                    id: payment,
                    status,
                },
            ) => match status {
                PaymentStatus::Failed | PaymentStatus::Refunded => Ok(()),
                PaymentStatus::Processing => Err(Error::Refused(format!(
                    "the provider still reports charge {payment} of order {id} as processing: wait until it settles, then resolve"
                ))),
                other @ PaymentStatus::Succeeded => Err(Error::Refused(format!(
                    "the provider reports charge {payment} of order {id} as {other}: releasing the stock of a paid order is not safe; resolve with --outcome succeeded, or refund with the provider first"
                ))),
            },
            (PaymentCheck::Failed, Seen::NotFound) => Ok(()),
            (PaymentCheck::Failed, Seen::Unknown(detail)) => {
                plan.notes.push(format!(
                    "the provider could not confirm the failure ({detail}); acted on the operator's word"
                ));
                Ok(())
            }
        }
    }

    /// Makes the plan's compensations with their deterministic keys; all
    /// must be confirmed before the order moves.
    async fn compensate(&self, order: &OrderRecord, plan: &Plan) -> Result<Vec<String>> {
        let made: Vec<String> = plan
            .undo
            .iter()
            .filter_map(|step| plans::describe(order, *step))
            .collect();
        if made.is_empty() {
            return Ok(made);
        }
        let downstreams = self.target.downstreams()?;
        let mut env = self.target.env.clone();
        env.actor.clone_from(&self.actor);
        match orderflow_stages::undo(downstreams, &env, order, &plan.undo, None).await {
            Confirmation::Confirmed => Ok(made),
            Confirmation::NotYet(detail) => Err(Error::Downstream(format!(
                "{detail}: not confirmed by the downstream, so order {} was not moved; run the same command again with --action-id {} (compensations repeat harmlessly)",
                self.order_id, self.action_id
            ))),
            Confirmation::Refused(detail) => Err(Error::Downstream(format!(
                "the downstream refused: {detail}; order {} was not moved: sort it out with the provider",
                self.order_id
            ))),
        }
    }

    fn render(&self, order: &OrderRecord, stage: Stage, plan: &Plan) -> Vec<Rendered> {
        let now = jiff::Timestamp::now();
        let ctx = RenderContext {
            spec: self.target.spec(),
            stage,
            order_id: &self.order_id,
            correlation_id: &order.correlation_id,
            policy_id: self.target.policy_id(),
            // The version after the move: unique per move, so a worker
            // never mistakes these messages for earlier ones.
            sequence: format!("v{}", order.version + 1),
            version: Some(order.version),
            moving_to: Some(plan.to),
            runs: 0,
            first_attempt_at: now.as_millisecond(),
            now,
        };
        render(&plan.emissions, &ctx, &[])
    }

    async fn publish(&self, messages: Vec<Outgoing>) -> Result<Vec<Published>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let publisher = self.target.publisher().await?;
        let published: Vec<Published> = messages.iter().map(Published::of).collect();
        let sent = publish_confirmed(&publisher, messages).await;
        publisher.close().await;
        match sent {
            Ok(()) => Ok(published),
            Err(err) => Err(Error::broker(format!(
                "order {} was handled, but its messages were not all confirmed; send them again with the same command and --action-id {}",
                self.order_id, self.action_id
            ))(err)),
        }
    }

    /// In flight: record the request (audited with the operator) and tell
    /// the fleet.
    async fn request_cancel(&self, order: &OrderRecord) -> Result<ActionReport> {
        let note = Note {
            event: "operator.cancel_requested".to_owned(),
            reason: Some(self.reason.clone()),
            actor: self.actor.clone(),
            correlation_id: order.correlation_id.clone(),
            policy_id: self.target.policy_id().clone(),
            rule: Some(self.step()),
        };
        let requested = self
            .target
            .store()
            .request_cancel(&self.order_id, &note)
            .await
            .map_err(Error::store(format!(
                "cannot record the cancellation of {}",
                self.order_id
            )))?;
        let mut notes = Vec::new();
        let (state, version) = match requested {
            CancelRequest::Recorded { version, state } => (state, version),
            CancelRequest::AlreadyRequested {
                version,
                state,
                reason,
            } => {
                notes.push(format!(
                    "a cancellation was already requested ({reason}); it was handed to the fleet again"
                ));
                (state, version)
            }
        };
        let body = serde_json::json!({
            "schema": "order.cancel/v1",
            "order_id": self.order_id,
            "reason": self.reason,
        });
        let message = Outgoing {
            exchange: self.target.names().orders_exchange(),
            routing_key: ORDER_CANCEL.to_owned(),
            body: body.to_string().into_bytes(),
            meta: Meta {
                message_id: Some(format!("cancel.{}.{}", self.order_id, self.action_id)),
                correlation_id: Some(order.correlation_id.clone()),
                order_id: Some(self.order_id.to_string()),
                timestamp: u64::try_from(jiff::Timestamp::now().as_second()).ok(),
                ..Meta::default()
            }
            .with_policy_id(self.target.policy_id()),
        };
        let published = self.publish(vec![message]).await?;
        notes.push(format!(
            "the {} stage carries the cancellation out once its outcome is known: follow it with `orderctl order show {}`",
            state.owner().map_or("owning", Stage::as_str),
            self.order_id
        ));
        Ok(ActionReport {
            action: self.kind,
            action_id: self.action_id.clone(),
            order_id: self.order_id.to_string(),
            done: Done::Requested,
            actor: self.actor.clone(),
            reason: self.reason.clone(),
            from: state,
            to: None,
            version: Some(version),
            compensations: Vec::new(),
            published,
            notes,
        })
    }
}

/// What the payment provider says about the order's charge.
enum Seen {
    Charge { id: String, status: PaymentStatus },
    NotFound,
    Unknown(String),
}
