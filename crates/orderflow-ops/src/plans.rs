//! What each manual action would do to an order in its current state, or
//! why it is refused — decided from the order alone, without I/O, so the
//! rules are tested on their own. `actions` carries the plans out.
//!
//! The safety rules, all from docs/design.md:
//! - nothing is refunded or released on an unknown outcome (I6): an
//!   escalation whose stage's outcome is unknown is resolved or retried,
//!   never cancelled;
//! - a payment is never resolved after shipping: that is a financial
//!   exception, without automatic rollback;
//! - a retry never re-sends an operation whose outcome is unknown to a
//!   provider that does not honour idempotency keys (it could apply twice);
//! - a retry of an operation that may have taken effect lets the stage ask
//!   the provider by key first, so it is refused when the provider cannot
//!   answer: no status query, or a key it may have forgotten;
//! - moves follow the state table (`orderflow_core::state::TRANSITIONS`).

use orderflow_core::state::check_transition;
use orderflow_core::{Certainty, Compensation, FailureClass, OrderState, Outcome, Policy, Stage};
use orderflow_downstream::{IdempotencyKey, Operation};
use orderflow_runtime::{Emission, StepMessage};
use orderflow_stages::events::order_event;
use orderflow_stages::operation::Shape;
use orderflow_stages::route::{describe_effect, imagined};
use orderflow_stages::{Foresight, foresee};
use orderflow_store::{FieldUpdate, LastOutcome, OrderRecord};
use serde::Serialize;

/// One planned move of an order by an operator.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub to: OrderState,
    /// The audit event.
    pub event: &'static str,
    pub fields: Vec<FieldUpdate>,
    /// Published once the move is written: the next stage's step message,
    /// the customer event.
    pub emissions: Vec<Emission>,
    /// Made (and confirmed) before the move.
    pub undo: Vec<Compensation>,
    /// The stage whose run counter starts again.
    pub reset: Option<Stage>,
    /// Checked with the payment provider before the move.
    pub check: Option<PaymentCheck>,
    pub notes: Vec<String>,
}

impl Plan {
    fn to(to: OrderState, event: &'static str) -> Plan {
        Plan {
            to,
            event,
            fields: Vec::new(),
            emissions: Vec::new(),
            undo: Vec::new(),
            reset: None,
            check: None,
            notes: Vec::new(),
        }
    }
}

/// What the payment provider must not contradict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PaymentCheck {
    /// The operator says the charge succeeded; `given` is the payment id
    /// they checked, else the provider's answer must supply it.
    Succeeded { given: Option<String> },
    /// The operator says the charge failed.
    Failed,
}

/// The payment outcome an operator found with the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentOutcome {
    Succeeded,
    Failed,
}

/// What to do with a blocked order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Ship it after all (or keep the shipment already accepted).
    Ship,
    /// Refund and release: cancelled.
    Refund,
}

/// A refusal, in words for the operator.
pub(crate) type Refusal = String;

fn ended(order: &OrderRecord) -> Refusal {
    format!(
        "order {} has ended ({}); there is nothing left to do to it",
        order.order_id, order.state
    )
}

/// `orderctl order resolve --stage payment`: from `payment_pending`, or
/// `escalated` from the payment stage.
pub(crate) fn resolve_payment(
    order: &OrderRecord,
    escalated_from: Option<OrderState>,
    outcome: PaymentOutcome,
    payment_id: Option<String>,
    reason: &str,
) -> Result<Plan, Refusal> {
    use OrderState::*;
    let id = &order.order_id;
    match order.state {
        PaymentPending => {}
        Escalated if escalated_from.and_then(OrderState::owner) == Some(Stage::Payment) => {}
        Escalated => {
            return Err(match escalated_from {
                Some(from @ (ShipmentAccepted | Paid | ShippingPending)) => format!(
                    "order {id} was escalated from {from}, after its payment was confirmed ({}); a payment problem now is a financial exception for the provider and finance, and the fleet does not roll it back",
                    order.reason.as_deref().unwrap_or("no reason given")
                ),
                Some(from) => format!(
                    "order {id} was escalated from {from} (the {} stage), not by the payment stage; see `orderctl order show {id}`",
                    from.owner().map_or("?", Stage::as_str)
                ),
                None => format!(
                    "cannot tell from the audit which stage escalated order {id}; see `orderctl order show {id}`"
                ),
            });
        }
        ShipmentAccepted | Delivered => {
            return Err(format!(
                "order {id} has shipped ({}): its payment cannot be resolved any more; a payment problem after shipping is a financial exception for the provider and finance, and the fleet does not roll it back",
                order.state
            ));
        }
        Paid | ShippingPending | Blocked => {
            return Err(format!(
                "the payment of order {id} is already confirmed (the order is {})",
                order.state
            ));
        }
        Rejected | Cancelled => return Err(ended(order)),
        Received | InventoryPending | Reserved => {
            return Err(format!(
                "order {id} has no payment to resolve: it is {} and the payment stage has not reported an unknown outcome",
                order.state
            ));
        }
    }
    Ok(match outcome {
        PaymentOutcome::Succeeded => {
            let mut plan = Plan::to(Paid, "operator.payment_succeeded");
            plan.fields.push(FieldUpdate::LastOutcome {
                stage: Stage::Payment,
                outcome: LastOutcome {
                    class: FailureClass::Success,
                    certainty: Certainty::Applied,
                },
            });
            plan.emissions = vec![
                Emission::Next {
                    stage: Stage::Shipping,
                },
                order_event(Paid, None),
            ];
            plan.check = Some(PaymentCheck::Succeeded { given: payment_id });
            plan
        }
        PaymentOutcome::Failed => {
            let mut plan = Plan::to(Rejected, "operator.payment_failed");
            plan.fields.push(FieldUpdate::LastOutcome {
                stage: Stage::Payment,
                outcome: LastOutcome {
                    class: FailureClass::BusinessRejection,
                    certainty: Certainty::NotApplied,
                },
            });
            plan.undo = vec![Compensation::ReleaseReservation];
            plan.emissions = vec![order_event(Rejected, Some(reason))];
            plan.check = Some(PaymentCheck::Failed);
            plan
        }
    })
}

/// `orderctl order retry --stage S`: an escalated or blocked order back to
/// the stage's entry state, its run counter reset, a step message to it.
/// The order keeps the stage's last outcome, so where the operation may
/// have taken effect the stage asks the provider by key before anything
/// else — which must still be able to answer at `now`.
pub(crate) fn retry(
    order: &OrderRecord,
    escalated_from: Option<OrderState>,
    stage: Stage,
    policy: &Policy,
    now: jiff::Timestamp,
) -> Result<Plan, Refusal> {
    let id = &order.order_id;
    match order.state {
        OrderState::Escalated => {
            let by = escalated_from.and_then(OrderState::owner);
            match by {
                Some(by) if by == stage => {}
                Some(by) => {
                    return Err(format!(
                        "order {id} was escalated by the {by} stage (from {}): retry it with --stage {by}",
                        escalated_from.map_or("?", OrderState::as_str)
                    ));
                }
                None => {
                    return Err(format!(
                        "cannot tell from the audit which stage escalated order {id}; see `orderctl order show {id}`"
                    ));
                }
            }
        }
        OrderState::Blocked => {
            if stage != Stage::Shipping {
                return Err(format!(
                    "a blocked order goes back to shipping only (blocked → paid): use --stage shipping, or `orderctl order unblock {id}`"
                ));
            }
            if let Some(shipment) = order.downstream_ids.get(&Stage::Shipping) {
                return Err(format!(
                    "order {id} already has an accepted shipment ({shipment}): decide with `orderctl order unblock {id} --decision ship|refund`"
                ));
            }
        }
        state if state.is_terminal() => return Err(ended(order)),
        state => {
            return Err(format!(
                "order {id} is {state}: the fleet is still working on it; a retry is for escalated and blocked orders"
            ));
        }
    }
    if let Some(refusal) = provider_cannot_say(order, stage, policy, now) {
        return Err(refusal);
    }
    let to = stage.entry();
    check_transition(order.state, to, None).map_err(|e| e.to_string())?;
    let mut plan = Plan::to(to, "operator.retry");
    plan.reset = Some(stage);
    plan.emissions = vec![Emission::Next { stage }, order_event(to, None)];
    Ok(plan)
}

/// Why the provider cannot tell a retried stage what became of an
/// operation of the order that may have taken effect, if it cannot: it
/// answers no status query, or the order was placed longer ago than it
/// keeps idempotency keys (the key cannot have been sent before the order
/// existed), so it may neither find the operation nor see a resend as
/// the same one. Also refused: re-sending an unknown outcome to a
/// provider without idempotency keys.
fn provider_cannot_say(
    order: &OrderRecord,
    stage: Stage,
    policy: &Policy,
    now: jiff::Timestamp,
) -> Option<Refusal> {
    if !order.may_have_applied(stage) {
        return None;
    }
    let id = &order.order_id;
    let downstream = policy.downstream(stage);
    let operation = Operation::work_of(stage);
    let key = IdempotencyKey::new(id, operation);
    let instead = match stage {
        Stage::Payment => format!(
            "check the charge with the provider (key {key}) and record what it says with `orderctl order resolve {id} --stage payment --outcome succeeded|failed`"
        ),
        _ => format!(
            "check with the provider by other means (key {key}) and settle the order with it by hand; `orderctl order resolve` records payments only"
        ),
    };
    let unknown = order
        .last_outcomes
        .get(&stage)
        .is_some_and(|last| last.certainty == Certainty::Unknown);
    if unknown && !downstream.idempotent {
        return Some(format!(
            "the last {stage} outcome of order {id} is unknown and the {stage} provider does not honour idempotency keys: a retry could apply the {} twice; {instead}",
            operation.as_str()
        ));
    }
    if !downstream.status_query {
        return Some(format!(
            "the {stage} provider answers no status query (downstreams.{stage}.status_query = false), so a retry cannot find out whether the earlier {} of order {id} took effect, and sending it again could do it twice; {instead}",
            operation.as_str()
        ));
    }
    let placed_ago =
        std::time::Duration::try_from(now.duration_since(order.created_at)).unwrap_or_default();
    if placed_ago >= downstream.key_retention {
        return Some(format!(
            "order {id} was placed {} ago, longer than the {stage} provider keeps idempotency keys (downstreams.{stage}.key_retention = {}): it may no longer find the earlier {} by its key, and would take a resend as a new one; {instead}",
            humantime::format_duration(std::time::Duration::from_secs(placed_ago.as_secs())),
            humantime::format_duration(downstream.key_retention),
            operation.as_str()
        ));
    }
    None
}

/// Refund what was charged, release what was reserved and not yet sold (a
/// shipment commits the reservation).
fn compensations(order: &OrderRecord) -> Vec<Compensation> {
    let mut steps = Vec::new();
    if order.downstream_ids.contains_key(&Stage::Payment) {
        steps.push(Compensation::RefundPayment);
    }
    if order.downstream_ids.contains_key(&Stage::Inventory)
        && !order.downstream_ids.contains_key(&Stage::Shipping)
    {
        steps.push(Compensation::ReleaseReservation);
    }
    steps
}

/// Words for a compensation step of `order`.
pub(crate) fn describe(order: &OrderRecord, step: Compensation) -> Option<String> {
    match step {
        Compensation::RefundPayment => order
            .downstream_ids
            .get(&Stage::Payment)
            .map(|id| format!("refund payment {id}")),
        Compensation::ReleaseReservation => order
            .downstream_ids
            .get(&Stage::Inventory)
            .map(|id| format!("release reservation {id}")),
    }
}

/// `orderctl order unblock --decision ship|refund`, for blocked orders.
pub(crate) fn unblock(
    order: &OrderRecord,
    decision: Decision,
    reason: &str,
) -> Result<Plan, Refusal> {
    let id = &order.order_id;
    match order.state {
        OrderState::Blocked => {}
        OrderState::Escalated => {
            return Err(format!(
                "order {id} is escalated, not blocked: see `orderctl order show {id}` for what resolves it"
            ));
        }
        state if state.is_terminal() => return Err(ended(order)),
        state => return Err(format!("order {id} is {state}, not blocked")),
    }
    Ok(match decision {
        Decision::Ship => match order.downstream_ids.get(&Stage::Shipping) {
            Some(shipment) => {
                let mut plan = Plan::to(OrderState::ShipmentAccepted, "operator.keep_shipment");
                plan.emissions = vec![order_event(OrderState::ShipmentAccepted, None)];
                plan.notes.push(format!(
                    "shipment {shipment} was accepted before the block and stands; the reconciler tracks it to delivery"
                ));
                plan
            }
            None => {
                if let Some(cancel) = &order.cancel_requested {
                    return Err(format!(
                        "a cancellation is requested on order {id} ({cancel}): the shipping stage would refund it instead of shipping; decide with --decision refund"
                    ));
                }
                let mut plan = Plan::to(OrderState::Paid, "operator.unblock_ship");
                plan.reset = Some(Stage::Shipping);
                plan.emissions = vec![
                    Emission::Next {
                        stage: Stage::Shipping,
                    },
                    order_event(OrderState::Paid, None),
                ];
                plan
            }
        },
        Decision::Refund => {
            let mut plan = Plan::to(OrderState::Cancelled, "operator.unblock_refund");
            plan.undo = compensations(order);
            plan.emissions = vec![order_event(OrderState::Cancelled, Some(reason))];
            plan
        }
    })
}

/// Who carries out a cancellation, and how.
#[derive(Debug, Clone)]
pub(crate) enum CancelRoute {
    /// In flight: the owning stage compensates once its outcome is known
    /// (an `order.cancel/v1` tells it). The steps say what it will do.
    Fleet(Vec<String>),
    /// Parked for a person (blocked, escalated): the operator's command
    /// compensates and cancels.
    Operator(Plan),
    Refused(Refusal),
}

/// `orderctl order cancel`: the compensation plan for the order's state
/// (docs/stage-logic.md).
pub(crate) fn cancel(
    order: &OrderRecord,
    escalated_from: Option<OrderState>,
    reason: &str,
    policy: &Policy,
) -> CancelRoute {
    use OrderState::*;
    let id = &order.order_id;
    match order.state {
        Received | InventoryPending | Reserved | PaymentPending | Paid | ShippingPending
        | ShipmentAccepted => {
            let mut steps = fleet_steps(order, policy);
            if order.state == ShipmentAccepted {
                steps.push(
                    "a person then decides with `orderctl order unblock --decision ship|refund`"
                        .to_owned(),
                );
            }
            CancelRoute::Fleet(steps)
        }
        Delivered | Rejected | Cancelled => CancelRoute::Refused(ended(order)),
        Blocked | Escalated => {
            if order.state == Escalated {
                let stage = escalated_from.and_then(OrderState::owner);
                if let Some(stage) = stage
                    && order
                        .last_outcomes
                        .get(&stage)
                        .is_some_and(|last| last.certainty == Certainty::Unknown)
                {
                    let fix = if stage == Stage::Payment {
                        format!(
                            "check the charge with the provider and `orderctl order resolve {id} --stage payment --outcome succeeded|failed` first"
                        )
                    } else {
                        format!(
                            "`orderctl order retry {id} --stage {stage}` lets the stage find out first"
                        )
                    };
                    return CancelRoute::Refused(format!(
                        "the {stage} outcome of order {id} is unknown: refunding or releasing on a guess could undo what did happen; {fix}"
                    ));
                }
            }
            let mut plan = Plan::to(Cancelled, "operator.cancelled");
            plan.undo = compensations(order);
            if order.downstream_ids.contains_key(&Stage::Shipping)
                && let Some(reservation) = order.downstream_ids.get(&Stage::Inventory)
            {
                plan.notes.push(format!(
                    "reservation {reservation} was committed by the shipment: nothing to release"
                ));
            }
            plan.emissions = vec![order_event(Cancelled, Some(reason))];
            CancelRoute::Operator(plan)
        }
    }
}

/// What the fleet does with a cancellation of `order`, in the stages' own
/// words: the inventory stage takes the `order.cancel/v1`, and the stage
/// that works on the order's state carries it out on its next run —
/// computed by `orderflow_stages::foresee`, as the dry run of a replay is,
/// for each answer its provider may give where it has to ask.
fn fleet_steps(order: &OrderRecord, policy: &Policy) -> Vec<String> {
    let mut order = order.clone();
    order
        .cancel_requested
        .get_or_insert_with(|| "cancelled".to_owned());
    let cancel = serde_json::json!({
        "schema": "order.cancel/v1", "order_id": order.order_id, "reason": "cancelled"
    });
    let cancel = imagined(cancel.to_string().into_bytes(), 1);
    let takes = foresee(Shape::of(Stage::Inventory), policy, &order, &cancel, None);
    let mut steps = vec![format!(
        "the inventory stage takes the cancel: {}",
        takes.describe(Stage::Inventory, &order)
    )];
    // The stage that carries it out, and the delivery it does so on.
    let owner = Stage::ALL
        .into_iter()
        .find(|stage| stage.works_on(order.state));
    let (stage, job, next) = match owner {
        Some(owner) if owner != Stage::Inventory => {
            let step = StepMessage::new(&order.order_id, owner);
            let job = imagined(
                serde_json::to_vec(&step).expect("a step message serializes"),
                1,
            );
            let next = foresee(Shape::of(owner), policy, &order, &job, None);
            steps.push(format!(
                "the {owner} stage, on its next run: {}",
                next.describe(owner, &order)
            ));
            (owner, job, next)
        }
        _ => (Stage::Inventory, cancel, takes),
    };
    if let Foresight::Calls { .. } = next {
        for (found, class, certainty) in [
            ("found done", FailureClass::Success, Certainty::Applied),
            (
                "found not done",
                FailureClass::Transient,
                Certainty::NotApplied,
            ),
            ("still unknown", FailureClass::Timeout, Certainty::Unknown),
        ] {
            let answer = Outcome::new(class, certainty);
            if let Foresight::Applies { effect, .. } =
                foresee(Shape::of(stage), policy, &order, &job, Some(&answer))
            {
                steps.push(format!(
                    "its {} {found}: it {}",
                    Operation::work_of(stage).as_str(),
                    describe_effect(order.state, &effect)
                ));
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_core::message::OrderId;
    use std::collections::BTreeMap;

    fn order(state: OrderState) -> OrderRecord {
        let now = jiff::Timestamp::now();
        OrderRecord {
            order_id: OrderId::parse("o-1").unwrap(),
            state,
            version: 3,
            reason: None,
            // The order as placed: the stages read it to plan a cancel.
            body: serde_json::json!({
                "schema": "order.placed/v1", "order_id": "o-1", "customer_id": "c-1",
                "items": [{"sku": "SKU-1", "quantity": 1, "unit_price": 100}],
                "currency": "EUR", "payment_token": "tok_ok",
                "shipping_address": {"name": "A", "line1": "1 Road", "city": "Town", "postal_code": "1000", "country": "NL"},
                "placed_at": "2026-11-28T10:00:00Z"
            }),
            correlation_id: "c-1".into(),
            policy_id: "pol-1".into(),
            created_at: now,
            updated_at: now,
            downstream_ids: BTreeMap::new(),
            last_outcomes: BTreeMap::new(),
            cancel_requested: None,
            reservation_committed: false,
        }
    }

    /// When [`order`] was placed.
    fn now() -> jiff::Timestamp {
        order(OrderState::Received).created_at
    }

    fn with_ids(mut order: OrderRecord, stages: &[Stage]) -> OrderRecord {
        for stage in stages {
            order
                .downstream_ids
                .insert(*stage, format!("{}-1", stage.as_str()));
        }
        order
    }

    fn unknown(mut order: OrderRecord, stage: Stage) -> OrderRecord {
        order.last_outcomes.insert(
            stage,
            LastOutcome {
                class: FailureClass::Timeout,
                certainty: Certainty::Unknown,
            },
        );
        order
    }

    #[test]
    fn payment_is_resolved_only_while_it_is_the_open_question() {
        use OrderState::*;
        let ok = |state, from| {
            resolve_payment(&order(state), from, PaymentOutcome::Succeeded, None, "r").is_ok()
        };
        assert!(ok(PaymentPending, None));
        assert!(ok(Escalated, Some(PaymentPending)));
        assert!(ok(Escalated, Some(Reserved)));
        for (state, from) in [
            (Escalated, Some(ShipmentAccepted)),
            (Escalated, Some(InventoryPending)),
            (Escalated, None),
            (ShipmentAccepted, None),
            (Delivered, None),
            (Paid, None),
            (Cancelled, None),
            (Reserved, None),
        ] {
            assert!(!ok(state, from), "{state} from {from:?}");
        }
        let shipped = resolve_payment(&order(Delivered), None, PaymentOutcome::Failed, None, "r")
            .unwrap_err();
        assert!(shipped.contains("has shipped"), "{shipped}");
    }

    #[test]
    fn a_resolved_payment_goes_to_shipping_or_releases_the_stock() {
        let paid = resolve_payment(
            &order(OrderState::PaymentPending),
            None,
            PaymentOutcome::Succeeded,
            Some("pay-9".into()),
            "checked",
        )
        .unwrap();
        assert_eq!(paid.to, OrderState::Paid);
        assert_eq!(
            paid.emissions[0],
            Emission::Next {
                stage: Stage::Shipping
            }
        );
        assert_eq!(
            paid.check,
            Some(PaymentCheck::Succeeded {
                given: Some("pay-9".into())
            })
        );
        let failed = resolve_payment(
            &order(OrderState::PaymentPending),
            None,
            PaymentOutcome::Failed,
            None,
            "declined",
        )
        .unwrap();
        assert_eq!(failed.to, OrderState::Rejected);
        assert_eq!(failed.undo, [Compensation::ReleaseReservation]);
        assert!(
            !failed
                .emissions
                .iter()
                .any(|e| matches!(e, Emission::Next { .. }))
        );
    }

    #[test]
    fn a_retry_goes_back_to_the_stage_that_escalated() {
        let policy = Policy::default_policy();
        let escalated = order(OrderState::Escalated);
        let plan = retry(
            &escalated,
            Some(OrderState::PaymentPending),
            Stage::Payment,
            &policy,
            now(),
        )
        .unwrap();
        assert_eq!(plan.to, OrderState::Reserved);
        assert_eq!(plan.reset, Some(Stage::Payment));
        let wrong = retry(
            &escalated,
            Some(OrderState::PaymentPending),
            Stage::Shipping,
            &policy,
            now(),
        )
        .unwrap_err();
        assert!(wrong.contains("--stage payment"), "{wrong}");
        let blocked = retry(
            &order(OrderState::Blocked),
            None,
            Stage::Shipping,
            &policy,
            now(),
        )
        .unwrap();
        assert_eq!(blocked.to, OrderState::Paid);
        assert!(
            retry(
                &order(OrderState::Blocked),
                None,
                Stage::Payment,
                &policy,
                now()
            )
            .is_err()
        );
        assert!(
            retry(
                &order(OrderState::Paid),
                None,
                Stage::Shipping,
                &policy,
                now()
            )
            .is_err()
        );
        assert!(
            retry(
                &order(OrderState::Delivered),
                None,
                Stage::Shipping,
                &policy,
                now()
            )
            .is_err()
        );
    }

    #[test]
    fn no_retry_resends_an_unknown_outcome_to_a_provider_without_keys() {
        let mut policy = Policy::default_policy();
        policy.downstreams.payment.idempotent = false;
        let escalated = unknown(order(OrderState::Escalated), Stage::Payment);
        let refused = retry(
            &escalated,
            Some(OrderState::PaymentPending),
            Stage::Payment,
            &policy,
            now(),
        )
        .unwrap_err();
        assert!(refused.contains("twice"), "{refused}");
        assert!(
            retry(
                &escalated,
                Some(OrderState::PaymentPending),
                Stage::Payment,
                &Policy::default_policy(),
                now()
            )
            .is_ok()
        );
    }

    #[test]
    fn a_retry_is_refused_when_the_provider_cannot_say_what_happened() {
        let escalated = unknown(order(OrderState::Escalated), Stage::Shipping);
        let placed = escalated.created_at;
        let from = Some(OrderState::ShippingPending);
        let at = |policy: &Policy, when| retry(&escalated, from, Stage::Shipping, policy, when);

        // It can: the stage asks by key first.
        let policy = Policy::default_policy();
        assert!(at(&policy, placed).is_ok());

        // No status query: nothing to ask.
        let mut blind = Policy::default_policy();
        blind.downstreams.shipping.status_query = false;
        let refused = at(&blind, placed).unwrap_err();
        assert!(
            refused.contains("downstreams.shipping.status_query")
                && refused.contains("o-1.shipping.ship"),
            "{refused}"
        );

        // The key may be forgotten: the order is older than its retention.
        let retention = policy.downstreams.shipping.key_retention;
        let later = placed + jiff::SignedDuration::try_from(retention).unwrap();
        let refused = at(&policy, later).unwrap_err();
        assert!(
            refused.contains("downstreams.shipping.key_retention"),
            "{refused}"
        );
        let just_before = later - jiff::SignedDuration::from_secs(1);
        assert!(at(&policy, just_before).is_ok());

        // A payment names the command that records it instead.
        let mut blind = Policy::default_policy();
        blind.downstreams.payment.status_query = false;
        let payment = unknown(order(OrderState::Escalated), Stage::Payment);
        let refused = retry(
            &payment,
            Some(OrderState::PaymentPending),
            Stage::Payment,
            &blind,
            payment.created_at,
        )
        .unwrap_err();
        assert!(
            refused.contains("order resolve o-1 --stage payment"),
            "{refused}"
        );

        // Known not to have happened: nothing to ask, resent as it is.
        let mut nothing = order(OrderState::Escalated);
        nothing.last_outcomes.insert(
            Stage::Shipping,
            LastOutcome {
                class: FailureClass::Overloaded,
                certainty: Certainty::NotApplied,
            },
        );
        assert!(retry(&nothing, from, Stage::Shipping, &blind_shipping(), later).is_ok());
    }

    fn blind_shipping() -> Policy {
        let mut policy = Policy::default_policy();
        policy.downstreams.shipping.status_query = false;
        policy
    }

    #[test]
    fn unblocking_ships_keeps_a_shipment_or_refunds() {
        let blocked = with_ids(
            order(OrderState::Blocked),
            &[Stage::Inventory, Stage::Payment],
        );
        let ship = unblock(&blocked, Decision::Ship, "fixed").unwrap();
        assert_eq!(
            (ship.to, ship.reset),
            (OrderState::Paid, Some(Stage::Shipping))
        );
        let refund = unblock(&blocked, Decision::Refund, "customer").unwrap();
        assert_eq!(refund.to, OrderState::Cancelled);
        assert_eq!(
            refund.undo,
            [
                Compensation::RefundPayment,
                Compensation::ReleaseReservation
            ]
        );

        let shipped = with_ids(blocked.clone(), &[Stage::Shipping]);
        let keep = unblock(&shipped, Decision::Ship, "keep").unwrap();
        assert_eq!(keep.to, OrderState::ShipmentAccepted);
        let refund = unblock(&shipped, Decision::Refund, "refund").unwrap();
        assert_eq!(
            refund.undo,
            [Compensation::RefundPayment],
            "the stock is sold"
        );

        let mut cancelled = blocked;
        cancelled.cancel_requested = Some("customer".into());
        assert!(unblock(&cancelled, Decision::Ship, "r").is_err());
        assert!(unblock(&order(OrderState::Paid), Decision::Ship, "r").is_err());
    }

    #[test]
    fn cancelling_follows_the_compensation_table() {
        use OrderState::*;
        for state in [
            Received,
            InventoryPending,
            Reserved,
            PaymentPending,
            Paid,
            ShippingPending,
            ShipmentAccepted,
        ] {
            assert!(
                matches!(
                    cancel(&order(state), None, "r", &Policy::default_policy()),
                    CancelRoute::Fleet(_)
                ),
                "{state}"
            );
        }
        // The fleet's steps are the stages' own: handed over, then carried
        // out by the owning stage — by answer where it must ask first.
        let policy = Policy::default_policy();
        let CancelRoute::Fleet(steps) = cancel(&order(Reserved), None, "r", &policy) else {
            panic!("a reserved order is cancelled by the fleet");
        };
        assert!(steps[0].contains("payment stage"), "{steps:?}");
        assert!(steps[1].contains("→ cancelled"), "{steps:?}");
        let CancelRoute::Fleet(steps) = cancel(&order(PaymentPending), None, "r", &policy) else {
            panic!("a pending payment is cancelled by the fleet");
        };
        assert_eq!(steps.len(), 5, "{steps:?}");
        assert!(steps[2].contains("found done") && steps[2].contains("→ cancelled"));
        assert!(steps[4].contains("still unknown") && !steps[4].contains("→"));
        let CancelRoute::Fleet(steps) = cancel(&order(ShipmentAccepted), None, "r", &policy) else {
            panic!("an accepted shipment is blocked by the fleet");
        };
        assert!(steps[0].contains("→ blocked"), "{steps:?}");
        for state in [Delivered, Rejected, Cancelled] {
            assert!(
                matches!(
                    cancel(&order(state), None, "r", &Policy::default_policy()),
                    CancelRoute::Refused(_)
                ),
                "{state}"
            );
        }
        let blocked = with_ids(order(Blocked), &[Stage::Inventory, Stage::Payment]);
        let CancelRoute::Operator(plan) = cancel(&blocked, None, "r", &Policy::default_policy())
        else {
            panic!("a blocked order is cancelled by the operator");
        };
        assert_eq!(
            plan.undo,
            [
                Compensation::RefundPayment,
                Compensation::ReleaseReservation
            ]
        );
        // Never on a guess: an unknown outcome is resolved first.
        let unresolved = unknown(
            with_ids(order(Escalated), &[Stage::Inventory]),
            Stage::Payment,
        );
        let CancelRoute::Refused(why) = cancel(
            &unresolved,
            Some(PaymentPending),
            "r",
            &Policy::default_policy(),
        ) else {
            panic!("an unknown payment outcome is never compensated");
        };
        assert!(why.contains("resolve"), "{why}");
        assert!(matches!(
            cancel(
                &unresolved,
                Some(ShipmentAccepted),
                "r",
                &Policy::default_policy()
            ),
            CancelRoute::Operator(_)
        ));
    }
}
