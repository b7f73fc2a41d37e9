//! What a stage does with a delivery for an order, decided from the order,
//! the delivery and the policy before anything is called. Every stage's
//! `run` follows [`route`]; a replay's dry run reads [`foresee`], which
//! takes the same route and, where the stage would call its downstream,
//! decides and builds the effect with the same functions the stage uses —
//! so a dry run says exactly what the stage will do if the downstream
//! answers as assumed.

use crate::events::order_event;
use crate::operation::{Decided, Shape, check_of, effect, never_sent, placed};
use crate::{cancel, deadline, ingress};
use orderflow_core::decide::DecisionContext;
use orderflow_core::message::OrderPlaced;
use orderflow_core::{OrderState, Outcome, Policy, Ruling, Stage};
use orderflow_downstream::{Start, resolve_on};
use orderflow_runtime::{Check, Effect, Job};
use orderflow_store::OrderRecord;

/// Where a delivery goes in its stage.
pub enum Route {
    /// Nothing to do: a duplicate, or the order moved on. Acknowledged,
    /// nothing written.
    Absorb,
    /// Settled without calling the stage's downstream: a deadline check, a
    /// cancel for a state another stage works on, an unreadable order.
    Settle(Box<Effect>),
    /// Poll the accepted shipment's fulfilment (the shipping stage).
    Track,
    /// A cancelled order whose operation was never sent: decided without
    /// calling (nothing happened); what earlier stages made is undone.
    Conclude(Box<Decided>),
    /// Call the downstream: `start` says whether to ask by key first.
    Operate {
        start: Start,
        ctx: Box<DecisionContext>,
        placed: Box<OrderPlaced>,
    },
}

/// The route of `job` for `order` in `shape`'s stage.
pub fn route(shape: &Shape, policy: &Policy, order: &OrderRecord, job: &Job) -> Route {
    match check_of(job) {
        Some(Check::Deadline) => {
            return Route::Settle(Box::new(deadline::check(shape, policy, order)));
        }
        Some(Check::Fulfilment)
            if shape.stage == Stage::Shipping && order.state == OrderState::ShipmentAccepted =>
        {
            return Route::Track;
        }
        _ => {}
    }
    if !shape.owns(order.state) {
        // Cancels come in through the inventory queue, whatever the state.
        let cancel = shape.stage == Stage::Inventory
            && matches!(
                ingress::read(&job.body),
                Ok(ingress::Message::Cancel { .. })
            );
        return if cancel {
            Route::Settle(Box::new(cancel::elsewhere(order)))
        } else {
            Route::Absorb
        };
    }
    let placed = match placed(order) {
        Ok(placed) => placed,
        Err(unreadable) => return Route::Settle(unreadable),
    };
    let ctx = shape.context(policy, order, job);
    if ctx.order.cancelled && !shape.may_have_acted(order, job) {
        return Route::Conclude(Box::new(never_sent(policy, ctx)));
    }
    Route::Operate {
        start: shape.start(policy, order, job),
        ctx: Box::new(ctx),
        placed: Box::new(placed),
    }
}

/// The inventory stage announces an order (`order.received`) with the
/// first thing done to it.
pub fn announced(shape: &Shape, order: &OrderRecord, job: &Job, mut effect: Effect) -> Effect {
    if shape.stage == Stage::Inventory && job.runs == 1 && order.state == OrderState::Received {
        effect
            .emissions
            .insert(0, order_event(OrderState::Received, None));
    }
    effect
}

/// A delivery as a dry run imagines it: `body`, the `runs`-th run of the
/// stage for the order, first attempted now.
pub fn imagined(body: Vec<u8>, runs: u32) -> Job {
    Job {
        message_id: "dry-run".into(),
        correlation_id: "dry-run".into(),
        meta: Default::default(),
        runs,
        first_attempt_at_ms: jiff::Timestamp::now().as_millisecond(),
        elapsed: std::time::Duration::ZERO,
        body,
        reruns: 0,
    }
}

/// What a stage will do with a delivery, as a dry run tells it.
#[derive(Debug, Clone)]
pub enum Foresight {
    /// Nothing: acknowledged, nothing written.
    Absorbs,
    /// Polls the accepted shipment and records what the carrier says.
    Tracks,
    /// Calls its downstream (asking by key first when `start` says so);
    /// what follows depends on the answer, which was not assumed.
    Calls { start: Start },
    /// Applies this effect: `ruling` is the decision it follows, when the
    /// policy was asked (`None`: settled without the policy).
    Applies {
        start: Option<Start>,
        ruling: Option<Ruling>,
        ctx: Option<Box<DecisionContext>>,
        effect: Box<Effect>,
    },
}

/// What `shape`'s stage does with `job` for `order` if its downstream
/// answers `answer` to every call of the run (and every compensation is
/// confirmed). Takes the stage's own [`route`], [`resolve_on`] for the
/// run's retries and status queries, and [`effect`].
pub fn foresee(
    shape: &Shape,
    policy: &Policy,
    order: &OrderRecord,
    job: &Job,
    answer: Option<&Outcome>,
) -> Foresight {
    let applies = |start, decided: Decided| {
        let effect = effect(shape, policy, order, &decided, None);
        Foresight::Applies {
            start,
            ruling: Some(decided.ruling),
            ctx: Some(Box::new(decided.ctx)),
            effect: Box::new(announced(shape, order, job, effect)),
        }
    };
    match route(shape, policy, order, job) {
        Route::Absorb => Foresight::Absorbs,
        Route::Track => Foresight::Tracks,
        Route::Settle(effect) => Foresight::Applies {
            start: None,
            ruling: None,
            ctx: None,
            effect,
        },
        Route::Conclude(decided) => applies(None, *decided),
        Route::Operate { start, ctx, .. } => match answer {
            None => Foresight::Calls { start },
            Some(answer) => {
                let (ruling, ctx) = resolve_on(policy, *ctx, start, answer);
                applies(
                    Some(start),
                    Decided {
                        ruling,
                        ctx,
                        made: None,
                    },
                )
            }
        },
    }
}

impl Foresight {
    /// In words, for an operator looking at `order` in `stage`.
    pub fn describe(&self, stage: Stage, order: &OrderRecord) -> String {
        let state = order.state;
        let how = |start: &Start| match start {
            Start::Query => "asks the provider by the order's idempotency key first",
            Start::Act => "calls the provider with the order's idempotency key",
        };
        match self {
            Foresight::Absorbs => {
                let why = match state {
                    s if s.is_terminal() => format!("the order is {s} (done); discard the message"),
                    OrderState::Blocked | OrderState::Escalated => format!(
                        "the order is {state} ({}) and waits for a person: resolve it with `orderctl order …` first",
                        order.reason.as_deref().unwrap_or("no reason")
                    ),
                    s => match s.owner() {
                        Some(owner) if owner != stage => format!(
                            "the order has moved on to {s}, which the {owner} stage works on"
                        ),
                        _ => format!("the order is {s}"),
                    },
                };
                format!("absorbs it, nothing happens: {why}")
            }
            Foresight::Tracks => "polls the shipment's fulfilment and records its progress".into(),
            Foresight::Calls { start } => format!(
                "runs again: the order is {state}; it {}, then decides on the answer",
                how(start)
            ),
            Foresight::Applies {
                start: Some(start),
                ctx,
                effect,
                ..
            } => {
                let answered = ctx
                    .as_ref()
                    .map(|ctx| {
                        format!(
                            "if it answers {}/{} again, it ",
                            ctx.outcome.class, ctx.outcome.certainty
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "runs again: the order is {state}; it {}; {answered}{}",
                    how(start),
                    describe_effect(state, effect)
                )
            }
            Foresight::Applies { effect, .. } => describe_effect(state, effect),
        }
    }
}

/// An effect in words: the move, or the note, and what is sent.
pub fn describe_effect(from: OrderState, effect: &Effect) -> String {
    let what = match (&effect.transition, &effect.note) {
        (Some(plan), _) => format!(
            "moves the order {from} → {} ({}{})",
            plan.to,
            plan.event,
            plan.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        (None, Some(note)) => format!(
            "leaves the order {from}, noting {}{}",
            note.event,
            note.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        (None, None) => format!("leaves the order {from}"),
    };
    let sends: Vec<String> = effect
        .emissions
        .iter()
        .map(|emission| match emission {
            orderflow_runtime::Emission::Next { stage } => format!("hands it to {stage}"),
            orderflow_runtime::Emission::Delay { tier, .. } => {
                format!("looks again after delay tier {tier}")
            }
            orderflow_runtime::Emission::Exception { reason, .. } => {
                format!("parks it in the exception queue as {reason}")
            }
            orderflow_runtime::Emission::Event { routing_key, .. } => {
                format!("announces {routing_key}")
            }
        })
        .collect();
    if sends.is_empty() {
        what
    } else {
        format!("{what}; {}", sends.join(", "))
    }
}

/// The stage table (docs/design.md §4) and the cancel table
/// (docs/stage-logic.md), row by row, through the stages' own pure path —
/// the route, the run's decision on an assumed answer, the effect — with
/// no Redis, broker or downstream.
#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass::*;
    use OrderState::*;
    use orderflow_core::message::OrderId;
    use orderflow_core::{Certainty, Compensation, Decision, FailureClass};
    use orderflow_runtime::{Emission, StepMessage};
    use orderflow_store::LastOutcome;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn order(state: OrderState) -> OrderRecord {
        let now = jiff::Timestamp::now();
        OrderRecord {
            order_id: OrderId::parse("o-1").unwrap(),
            state,
            version: 3,
            reason: None,
            body: serde_json::json!({
                "schema": "order.placed/v1",
                "order_id": "o-1",
                "customer_id": "c-1",
                "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": 1250}],
                "currency": "EUR",
                "payment_token": "tok_ok",
                "shipping_address": {"name": "A", "line1": "1 Road", "city": "Town", "postal_code": "1000", "country": "NL"},
                "placed_at": "2026-11-28T10:00:00Z"
            }),
            correlation_id: "c-1".into(),
            policy_id: "pol-1".into(),
            created_at: now,
            updated_at: now,
            downstream_ids: BTreeMap::from([
                (Stage::Inventory, "res-1".to_owned()),
                (Stage::Payment, "pay-1".to_owned()),
            ]),
            last_outcomes: BTreeMap::new(),
            cancel_requested: None,
            reservation_committed: false,
        }
    }

    fn cancelled(state: OrderState) -> OrderRecord {
        OrderRecord {
            cancel_requested: Some("customer".into()),
            ..order(state)
        }
    }

    fn job_with(body: Vec<u8>) -> Job {
        imagined(body, 1)
    }

    fn step(stage: Stage, check: Option<Check>) -> Job {
        let id = OrderId::parse("o-1").unwrap();
        let message = match check {
            Some(check) => StepMessage::check(&id, stage, check),
            None => StepMessage::new(&id, stage),
        };
        job_with(serde_json::to_vec(&message).unwrap())
    }

    fn cancel() -> Job {
        job_with(
            serde_json::to_vec(&serde_json::json!({
                "schema": "order.cancel/v1", "order_id": "o-1", "reason": "customer"
            }))
            .unwrap(),
        )
    }

    fn answer(class: FailureClass, certainty: Certainty) -> Outcome {
        Outcome::new(class, certainty)
    }

    /// The effect the stage applies, and the decision it follows.
    fn applies(
        stage: Stage,
        policy: &Policy,
        order: &OrderRecord,
        job: &Job,
        answer: Option<Outcome>,
    ) -> (Effect, Option<Decision>) {
        match foresee(Shape::of(stage), policy, order, job, answer.as_ref()) {
            Foresight::Applies { effect, ruling, .. } => (*effect, ruling.map(|r| r.decision)),
            other => panic!("{stage} on {}: {other:?}", order.state),
        }
    }

    fn moved_to(effect: &Effect) -> Option<OrderState> {
        effect.transition.as_ref().map(|plan| plan.to)
    }

    fn parked(effect: &Effect) -> Option<&str> {
        effect.emissions.iter().find_map(|e| match e {
            Emission::Exception { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
    }

    fn delay(effect: &Effect) -> Option<u32> {
        effect.emissions.iter().find_map(|e| match e {
            Emission::Delay { tier, .. } => Some(*tier),
            _ => None,
        })
    }

    fn next(effect: &Effect) -> Option<Stage> {
        effect.emissions.iter().find_map(|e| match e {
            Emission::Next { stage } => Some(*stage),
            _ => None,
        })
    }

    #[test]
    fn confirmed_successes_move_each_stage_on() {
        let policy = Policy::default_policy();
        for (stage, from, to, then) in [
            (Stage::Inventory, Received, Reserved, Some(Stage::Payment)),
            (Stage::Payment, Reserved, Paid, Some(Stage::Shipping)),
            (Stage::Shipping, Paid, ShipmentAccepted, None),
        ] {
            let ok = Some(answer(Success, Certainty::Applied));
            let (effect, decision) = applies(stage, &policy, &order(from), &step(stage, None), ok);
            assert_eq!(decision, Some(Decision::Proceed), "{stage}");
            assert_eq!(moved_to(&effect), Some(to), "{stage}");
            assert_eq!(next(&effect), then, "{stage}");
        }
        // The inventory stage announces the order with its first move.
        let ok = Some(answer(Success, Certainty::Applied));
        let (effect, _) = applies(
            Stage::Inventory,
            &policy,
            &order(Received),
            &step(Stage::Inventory, None),
            ok,
        );
        assert!(
            matches!(&effect.emissions[0], Emission::Event { routing_key, .. } if routing_key == "order.received")
        );
    }

    #[test]
    fn deterministic_refusals_fail_fast_reject_or_block() {
        let policy = Policy::default_policy();
        let refused = || Some(answer(BusinessRejection, Certainty::NotApplied));
        // Insufficient stock: rejected at once, nothing to undo.
        let (effect, _) = applies(
            Stage::Inventory,
            &policy,
            &order(Received),
            &step(Stage::Inventory, None),
            refused(),
        );
        assert_eq!(moved_to(&effect), Some(Rejected));
        // A declined charge: rejected, the reservation released.
        let (effect, decision) = applies(
            Stage::Payment,
            &policy,
            &order(Reserved),
            &step(Stage::Payment, None),
            refused(),
        );
        assert_eq!(moved_to(&effect), Some(Rejected));
        assert!(
            matches!(decision, Some(Decision::Compensate { steps, .. }) if steps == [Compensation::ReleaseReservation])
        );
        // A refused shipment: blocked for a person, nothing rolled back.
        let (effect, decision) = applies(
            Stage::Shipping,
            &policy,
            &order(Paid),
            &step(Stage::Shipping, None),
            refused(),
        );
        assert_eq!(moved_to(&effect), Some(Blocked));
        assert!(parked(&effect).is_some());
        assert!(matches!(decision, Some(Decision::Block { .. })));
    }

    #[test]
    fn an_unknown_outcome_is_asked_about_then_parked_pending() {
        let policy = Policy::default_policy();
        for (stage, from, pending) in [
            (Stage::Inventory, Received, InventoryPending),
            (Stage::Payment, Reserved, PaymentPending),
            (Stage::Shipping, Paid, ShippingPending),
        ] {
            let unknown = Some(answer(Timeout, Certainty::Unknown));
            let foresight = foresee(
                Shape::of(stage),
                &policy,
                &order(from),
                &step(stage, None),
                unknown.as_ref(),
            );
            let Foresight::Applies {
                effect,
                ctx: Some(ctx),
                ruling: Some(ruling),
                ..
            } = foresight
            else {
                panic!("{stage}: {foresight:?}");
            };
            assert!(ctx.queried, "{stage}: asked by key before parking");
            assert_eq!(moved_to(&effect), Some(pending), "{stage}");
            let tier = delay(&effect).expect("a delay-tier copy") as usize;
            if let Decision::Defer { .. } = ruling.decision {
                // Re-sent (same key) only after the in-flight window.
                let stage_policy = policy.stage(stage);
                assert!(
                    stage_policy.delay_tiers[tier] >= stage_policy.in_flight_window,
                    "{stage}"
                );
            }
        }
        // Past the ambiguity window a pending payment is a person's.
        let mut late = step(Stage::Payment, None);
        late.elapsed = policy.stage(Stage::Payment).ambiguity_window + Duration::from_secs(1);
        let (effect, _) = applies(
            Stage::Payment,
            &policy,
            &order(PaymentPending),
            &late,
            Some(answer(Timeout, Certainty::Unknown)),
        );
        assert_eq!(moved_to(&effect), Some(Escalated));
        // A shipment found accepted after a timeout proceeds.
        let (effect, _) = applies(
            Stage::Shipping,
            &policy,
            &order(ShippingPending),
            &step(Stage::Shipping, None),
            Some(answer(Success, Certainty::Applied)),
        );
        assert_eq!(moved_to(&effect), Some(ShipmentAccepted));
    }

    #[test]
    fn an_overloaded_downstream_is_retried_in_the_delivery_then_deferred() {
        let policy = Policy::default_policy();
        let foresight = foresee(
            &INVENTORY_SHAPE,
            &policy,
            &order(Received),
            &step(Stage::Inventory, None),
            Some(&answer(Overloaded, Certainty::NotApplied)),
        );
        let Foresight::Applies {
            effect,
            ctx: Some(ctx),
            ..
        } = foresight
        else {
            panic!("{foresight:?}");
        };
        assert!(ctx.attempt > 1, "retried within the budget first");
        assert_eq!(moved_to(&effect), None, "nothing moves on a known failure");
        assert!(delay(&effect).is_some() && effect.note.is_some());
    }

    #[test]
    fn an_unknown_outcome_without_a_status_query_or_keys_is_escalated() {
        let mut policy = Policy::default_policy();
        policy.downstreams.payment.status_query = false;
        policy.downstreams.payment.idempotent = false;
        let (effect, _) = applies(
            Stage::Payment,
            &policy,
            &order(Reserved),
            &step(Stage::Payment, None),
            Some(answer(Transient, Certainty::Unknown)),
        );
        assert_eq!(moved_to(&effect), Some(Escalated));
        assert!(parked(&effect).is_some());
    }

    #[test]
    fn tracking_and_deadlines_are_the_reconcilers_checks() {
        let policy = Policy::default_policy();
        let fulfilment = step(Stage::Shipping, Some(Check::Fulfilment));
        assert!(matches!(
            foresee(
                &SHIPPING_SHAPE,
                &policy,
                &order(ShipmentAccepted),
                &fulfilment,
                None
            ),
            Foresight::Tracks
        ));
        let mut stuck = order(Reserved);
        stuck.updated_at = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2);
        let (effect, _) = applies(
            Stage::Payment,
            &policy,
            &stuck,
            &step(Stage::Payment, Some(Check::Deadline)),
            None,
        );
        assert_eq!(moved_to(&effect), Some(Escalated));
        assert_eq!(parked(&effect), Some("stuck"));
        // Moved on since the reconciler looked: nothing.
        assert!(matches!(
            foresee(
                &PAYMENT_SHAPE,
                &policy,
                &order(Paid),
                &step(Stage::Payment, None),
                None
            ),
            Foresight::Absorbs
        ));
    }

    /// What a row expects of the effect.
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Expect {
        moves_to: Option<OrderState>,
        parked: Option<&'static str>,
        note: Option<&'static str>,
        delayed: bool,
    }

    const NOTHING: Expect = Expect {
        moves_to: None,
        parked: None,
        note: None,
        delayed: false,
    };

    fn expect(effect: &Effect) -> Expect {
        Expect {
            moves_to: moved_to(effect),
            parked: parked(effect).map(|r| match r {
                "cancel_after_shipment" => "cancel_after_shipment",
                "cancel_refused" => "cancel_refused",
                _ => "other",
            }),
            note: effect.note.as_ref().map(|n| match n.event.as_str() {
                "order.cancel_handed_over" => "handed over",
                "order.cancel_ignored" => "ignored",
                _ => "other",
            }),
            delayed: delay(effect).is_some(),
        }
    }

    #[test]
    fn a_cancel_is_carried_out_by_the_stage_that_owns_the_state() {
        let policy = Policy::default_policy();
        let ok = Some(answer(Success, Certainty::Applied));
        let unknown = Some(answer(Timeout, Certainty::Unknown));
        let step = |stage| step(stage, None);
        let to = |state| Expect {
            moves_to: Some(state),
            ..NOTHING
        };
        let note = |what| Expect {
            note: Some(what),
            ..NOTHING
        };
        let blocked = Expect {
            moves_to: Some(Blocked),
            parked: Some("cancel_after_shipment"),
            ..NOTHING
        };
        #[rustfmt::skip]
        let rows = [
            // received: nothing was sent, so nothing is called or released.
            (Stage::Inventory, Received, cancel(), None, to(Cancelled)),
            // inventory_pending: asked first; a reservation found is released.
            (Stage::Inventory, InventoryPending, cancel(), ok.clone(), to(Cancelled)),
            // Handed over to the stage that works on the state.
            (Stage::Inventory, Reserved, cancel(), None, note("handed over")),
            (Stage::Inventory, PaymentPending, cancel(), None, note("handed over")),
            (Stage::Inventory, Paid, cancel(), None, note("handed over")),
            (Stage::Inventory, ShippingPending, cancel(), None, note("handed over")),
            // The payment stage: no charge yet → released, cancelled.
            (Stage::Payment, Reserved, step(Stage::Payment), None, to(Cancelled)),
            // A charge found succeeded → refunded and released, cancelled.
            (Stage::Payment, PaymentPending, step(Stage::Payment), ok.clone(), to(Cancelled)),
            // Still unknown → never a guess: it keeps re-checking.
            (Stage::Payment, PaymentPending, step(Stage::Payment), unknown, Expect { delayed: true, note: Some("other"), ..NOTHING }),
            // The shipping stage, before booking: refunded and released.
            (Stage::Shipping, Paid, step(Stage::Shipping), None, to(Cancelled)),
            // A shipment found accepted: blocked for a person.
            (Stage::Shipping, ShippingPending, step(Stage::Shipping), ok, blocked),
            (Stage::Inventory, ShipmentAccepted, cancel(), None, blocked),
            // Ended: noted, nothing else.
            (Stage::Inventory, Cancelled, cancel(), None, note("ignored")),
            (Stage::Inventory, Rejected, cancel(), None, note("ignored")),
            // Past the fleet: refused to a person.
            (Stage::Inventory, Delivered, cancel(), None, Expect { parked: Some("cancel_refused"), note: Some("other"), ..NOTHING }),
            (Stage::Inventory, Blocked, cancel(), None, Expect { parked: Some("cancel_refused"), note: Some("other"), ..NOTHING }),
            (Stage::Inventory, Escalated, cancel(), None, Expect { parked: Some("cancel_refused"), note: Some("other"), ..NOTHING }),
        ];
        for (stage, state, job, answer, expected) in rows {
            let (effect, _) = applies(stage, &policy, &cancelled(state), &job, answer);
            assert_eq!(expect(&effect), expected, "{stage} on a cancelled {state}");
        }
        // A pending reservation is asked about before anything is undone.
        assert!(matches!(
            foresee(
                &INVENTORY_SHAPE,
                &policy,
                &cancelled(InventoryPending),
                &cancel(),
                None
            ),
            Foresight::Calls {
                start: Start::Query
            }
        ));
    }

    #[test]
    fn an_outcome_that_may_have_taken_effect_is_asked_about_first() {
        let policy = Policy::default_policy();
        let mut retried = order(Reserved);
        retried.last_outcomes.insert(
            Stage::Payment,
            LastOutcome {
                class: Timeout,
                certainty: Certainty::Unknown,
            },
        );
        let first = step(Stage::Payment, None);
        assert!(matches!(
            foresee(&PAYMENT_SHAPE, &policy, &retried, &first, None),
            Foresight::Calls {
                start: Start::Query
            }
        ));
        assert!(matches!(
            foresee(&PAYMENT_SHAPE, &policy, &order(Reserved), &first, None),
            Foresight::Calls { start: Start::Act }
        ));
        let mut later = first;
        later.runs = 2;
        assert!(matches!(
            foresee(&PAYMENT_SHAPE, &policy, &order(Reserved), &later, None),
            Foresight::Calls {
                start: Start::Query
            }
        ));
    }

    #[test]
    fn the_deferred_copy_of_a_run_that_knew_nothing_was_done_sends_at_once() {
        let policy = Policy::default_policy();
        // Run 1 deferred on a refusal (nothing done): its copy is run 2.
        let mut deferred = step(Stage::Payment, None);
        deferred.runs = 2;
        deferred.meta.attempt = Some(2);
        deferred.meta.certainty = Some(Certainty::NotApplied);
        assert!(matches!(
            foresee(&PAYMENT_SHAPE, &policy, &order(Reserved), &deferred, None),
            Foresight::Calls { start: Start::Act }
        ));
        // A run between them (a crash after sending, a duplicate) may have
        // sent it; a deferral on an unknown outcome knows nothing: ask.
        let mut overtaken = deferred.clone();
        overtaken.runs = 3;
        let mut unknown = deferred.clone();
        unknown.meta.certainty = Some(Certainty::Unknown);
        for job in [overtaken, unknown] {
            assert!(matches!(
                foresee(&PAYMENT_SHAPE, &policy, &order(Reserved), &job, None),
                Foresight::Calls {
                    start: Start::Query
                }
            ));
        }
    }

    use crate::operation::{
        INVENTORY as INVENTORY_SHAPE, PAYMENT as PAYMENT_SHAPE, SHIPPING as SHIPPING_SHAPE,
    };
}
