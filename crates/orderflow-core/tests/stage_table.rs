//! One test per row of docs/design.md §4, against the default policy.

use orderflow_core::decide::{
    BreakerState, BudgetState, Capabilities, Compensation, Decision, DecisionContext,
    FulfilmentStep, decide, track_fulfilment, track_unanswered_fulfilment,
};
use orderflow_core::{Certainty, FailureClass, Outcome, Policy, Stage};
use std::time::Duration;

use Certainty::*;
use FailureClass::*;

fn ctx(stage: Stage, class: FailureClass, certainty: Certainty) -> DecisionContext {
    DecisionContext::first_attempt(
        &Policy::default_policy(),
        stage,
        Outcome::new(class, certainty),
    )
}

fn with_code(mut ctx: DecisionContext, code: &str) -> DecisionContext {
    ctx.outcome.code = Some(code.to_owned());
    ctx
}

fn queried(mut ctx: DecisionContext) -> DecisionContext {
    ctx.queried = true;
    ctx
}

fn run(ctx: &DecisionContext) -> (Decision, &'static str) {
    let ruling = decide(&Policy::default_policy(), ctx);
    (ruling.decision, ruling.rule)
}

// inventory

#[test]
fn inventory_reserved_proceeds_to_payment() {
    assert_eq!(
        run(&ctx(Stage::Inventory, Success, Applied)).0,
        Decision::Proceed
    );
}

#[test]
fn inventory_insufficient_stock_fails_fast() {
    let c = with_code(
        ctx(Stage::Inventory, BusinessRejection, NotApplied),
        "insufficient_stock",
    );
    assert_eq!(
        run(&c),
        (
            Decision::FailFast {
                reason: "insufficient_stock".into()
            },
            "inventory.rejected.fail_fast"
        )
    );
}

#[test]
fn inventory_timeout_queries_status_first() {
    assert_eq!(
        run(&ctx(Stage::Inventory, Timeout, Unknown)).0,
        Decision::QueryStatus
    );
}

#[test]
fn inventory_timeout_still_unknown_defers_a_retry_with_the_same_key_after_the_in_flight_window() {
    let (decision, rule) = run(&queried(ctx(Stage::Inventory, Timeout, Unknown)));
    assert_eq!(rule, "unknown.deferred_retry_same_key");
    // The first tier (1s) is shorter than the in-flight window (3s).
    assert_eq!(
        decision,
        Decision::Defer {
            tier: 0,
            delay: Duration::from_secs(3)
        }
    );
}

#[test]
fn inventory_transient_retries_within_the_in_process_limit() {
    let (decision, _) = run(&ctx(Stage::Inventory, Overloaded, NotApplied));
    assert_eq!(
        decision,
        Decision::RetryAfter {
            delay: Duration::from_millis(100)
        }
    );
}

#[test]
fn inventory_rate_limited_honours_retry_after() {
    let mut c = ctx(Stage::Inventory, RateLimited, NotApplied);
    c.outcome.retry_after = Some(Duration::from_millis(1500));
    assert_eq!(
        run(&c).0,
        Decision::RetryAfter {
            delay: Duration::from_millis(1500)
        }
    );
    // A pause longer than the backoff cap is not waited out in process.
    c.outcome.retry_after = Some(Duration::from_secs(20));
    assert_eq!(
        run(&c).0,
        Decision::Defer {
            tier: 2,
            delay: Duration::from_secs(30)
        }
    );
}

#[test]
fn inventory_transient_defers_once_in_process_attempts_are_spent() {
    let mut c = ctx(Stage::Inventory, Transient, NotApplied);
    c.attempt = 3;
    assert_eq!(
        run(&c),
        (
            Decision::Defer {
                tier: 0,
                delay: Duration::from_secs(1)
            },
            "retryable.defer"
        )
    );
    c.deferrals = 5;
    assert_eq!(
        run(&c).0,
        Decision::Escalate {
            reason: "inventory_retries_exhausted".into()
        }
    );
}

#[test]
fn inventory_breaker_open_or_budget_spent_applies_the_overload_behaviour() {
    let mut c = ctx(Stage::Inventory, Overloaded, NotApplied);
    c.breaker = BreakerState::Open;
    assert_eq!(
        run(&c),
        (
            Decision::Defer {
                tier: 0,
                delay: Duration::from_secs(1)
            },
            "overload.defer"
        )
    );

    let mut fail_fast = Policy::default_policy();
    fail_fast.stages.inventory.overload = orderflow_core::policy::Overload::FailFast;
    let mut c = ctx(Stage::Inventory, Transient, NotApplied);
    c.budget = BudgetState::Spent;
    assert_eq!(
        decide(&fail_fast, &c).decision,
        Decision::FailFast {
            reason: "inventory_unavailable_retry_later".into()
        }
    );
}

#[test]
fn inventory_deferred_retry_finding_the_order_cancelled_releases_the_reservation() {
    let mut c = ctx(Stage::Inventory, Success, Applied);
    c.order.cancelled = true;
    assert_eq!(
        run(&c).0,
        Decision::Compensate {
            steps: vec![Compensation::ReleaseReservation],
            reason: "cancelled".into()
        }
    );
    // Unknown: find out first, never release on a guess.
    let mut c = ctx(Stage::Inventory, Timeout, Unknown);
    c.order.cancelled = true;
    assert_eq!(run(&c).0, Decision::QueryStatus);
}

// payment

#[test]
fn payment_authorised_proceeds_to_shipping() {
    assert_eq!(
        run(&ctx(Stage::Payment, Success, Applied)).0,
        Decision::Proceed
    );
}

#[test]
fn payment_declined_rejects_and_releases_inventory() {
    for code in ["card_declined", "insufficient_funds", "fraud_suspected"] {
        let c = with_code(ctx(Stage::Payment, BusinessRejection, NotApplied), code);
        assert_eq!(
            run(&c),
            (
                Decision::Compensate {
                    steps: vec![Compensation::ReleaseReservation],
                    reason: code.into()
                },
                "payment.rejected.release"
            )
        );
    }
}

#[test]
fn payment_timeout_5xx_or_processing_queries_then_parks_pending() {
    for (class, code) in [
        (Timeout, None),
        (Transient, None),
        (Success, Some("processing")),
    ] {
        let mut c = ctx(Stage::Payment, class, Unknown);
        c.outcome.code = code.map(str::to_owned);
        assert_eq!(run(&c).0, Decision::QueryStatus);
        let (decision, rule) = run(&queried(c));
        assert_eq!(rule, "unknown.park_pending");
        assert_eq!(
            decision,
            Decision::ParkPending {
                tier: 0,
                delay: Duration::from_secs(2)
            }
        );
        assert!(!decision.resends(), "an unknown charge is never re-sent");
    }
}

#[test]
fn payment_unknown_past_the_ambiguity_window_escalates() {
    let mut c = queried(ctx(Stage::Payment, Timeout, Unknown));
    c.elapsed = Duration::from_secs(31 * 60);
    c.deferrals = 7;
    assert_eq!(
        run(&c),
        (
            Decision::Escalate {
                reason: "payment_unresolved".into()
            },
            "unknown.ambiguity_window_passed.escalate"
        )
    );
}

#[test]
fn payment_failure_learned_after_shipping_escalates_without_rollback() {
    let mut c = ctx(Stage::Payment, BusinessRejection, NotApplied);
    c.order.shipment_accepted = true;
    assert_eq!(
        run(&c).0,
        Decision::Escalate {
            reason: "payment_failed_after_shipment".into()
        }
    );
}

// shipping

#[test]
fn shipping_accepted_proceeds() {
    assert_eq!(
        run(&ctx(Stage::Shipping, Success, Applied)).0,
        Decision::Proceed
    );
}

#[test]
fn shipping_acceptance_failure_blocks_without_rollback() {
    for code in ["unsupported_destination", "invalid_address"] {
        let c = with_code(ctx(Stage::Shipping, BusinessRejection, NotApplied), code);
        assert_eq!(
            run(&c),
            (
                Decision::Block {
                    reason: code.into()
                },
                "shipping.refused.block"
            )
        );
    }
}

#[test]
fn shipping_timeout_queries_then_retries_with_the_same_key_when_not_found() {
    assert_eq!(
        run(&ctx(Stage::Shipping, Timeout, Unknown)).0,
        Decision::QueryStatus
    );
    // Found: the status query says accepted.
    assert_eq!(
        run(&queried(ctx(Stage::Shipping, Success, Applied))).0,
        Decision::Proceed
    );
    // Not found: the status query's 404 is transient / not applied.
    let (decision, rule) = run(&queried(ctx(Stage::Shipping, Transient, NotApplied)));
    assert_eq!(rule, "retryable.retry");
    assert!(decision.resends());
    // Still unknown after the query: deferred retry, same key.
    assert_eq!(
        run(&queried(ctx(Stage::Shipping, Timeout, Unknown))).1,
        "unknown.deferred_retry_same_key"
    );
}

#[test]
fn fulfilment_exception_or_stall_escalates() {
    let policy = Policy::default_policy();
    assert_eq!(
        track_fulfilment(&policy, FulfilmentStep::Exception, Duration::ZERO).decision,
        Decision::Escalate {
            reason: "fulfilment_exception".into()
        }
    );
    assert_eq!(
        track_fulfilment(&policy, FulfilmentStep::Packed, Duration::from_secs(3600)).decision,
        Decision::Escalate {
            reason: "fulfilment_stalled".into()
        }
    );
    assert_eq!(
        track_fulfilment(&policy, FulfilmentStep::Packed, Duration::from_secs(1)).rule,
        "fulfilment.poll"
    );
    assert_eq!(
        track_fulfilment(&policy, FulfilmentStep::Delivered, Duration::ZERO).decision,
        Decision::Proceed
    );
}

#[test]
fn a_shipment_whose_status_cannot_be_read_escalates_past_the_stall_threshold() {
    let policy = Policy::default_policy();
    let stall = policy.fulfilment.stall_after;
    assert_eq!(
        track_unanswered_fulfilment(&policy, stall - Duration::from_secs(1)).rule,
        "fulfilment.poll"
    );
    let ruling = track_unanswered_fulfilment(&policy, stall);
    assert_eq!(ruling.rule, "fulfilment.untracked.escalate");
    assert_eq!(
        ruling.decision,
        Decision::Escalate {
            reason: "fulfilment_untracked".into()
        }
    );
}

// any stage

#[test]
fn a_non_idempotent_downstream_without_status_query_is_never_retried_on_unknown() {
    for stage in Stage::ALL {
        let mut c = ctx(stage, Timeout, Unknown);
        c.capabilities = Capabilities {
            idempotent: false,
            status_query: false,
        };
        let (decision, rule) = run(&c);
        assert_eq!(rule, "unknown.no_safe_retry.escalate");
        assert!(matches!(decision, Decision::Escalate { .. }));
    }
}

#[test]
fn a_non_idempotent_downstream_with_status_query_is_rechecked_not_resent() {
    let mut c = queried(ctx(Stage::Inventory, Timeout, Unknown));
    c.capabilities = Capabilities {
        idempotent: false,
        status_query: true,
    };
    assert_eq!(run(&c).1, "unknown.park_pending");
}

#[test]
fn infrastructure_errors_escalate() {
    let c = with_code(
        ctx(Stage::Payment, Infrastructure, NotApplied),
        "idempotency_mismatch",
    );
    assert_eq!(
        run(&c).0,
        Decision::Escalate {
            reason: "downstream_infrastructure: idempotency_mismatch".into()
        }
    );
}

#[test]
fn the_naive_preset_retries_then_rolls_back_whatever_the_certainty() {
    let naive = Policy::naive();
    let mut c = ctx(Stage::Shipping, Timeout, Unknown);
    assert_eq!(
        decide(&naive, &c).decision,
        Decision::RetryAfter {
            delay: Duration::ZERO
        }
    );
    c.attempt = 4;
    assert_eq!(
        decide(&naive, &c).decision,
        Decision::Compensate {
            steps: vec![
                Compensation::RefundPayment,
                Compensation::ReleaseReservation
            ],
            reason: "shipping_failed".into()
        }
    );
}
