//! Safety properties of the default policy over generated contexts.

use orderflow_core::decide::{
    BreakerState, BudgetState, Capabilities, Decision, DecisionContext, OrderFacts, decide,
};
use orderflow_core::{Certainty, FailureClass, Outcome, Policy, Stage};
use proptest::prelude::*;
use proptest::sample::select;
use std::time::Duration;

fn context() -> impl Strategy<Value = DecisionContext> {
    (
        select(Stage::ALL.to_vec()),
        select(FailureClass::ALL.to_vec()),
        select(Certainty::ALL.to_vec()),
        proptest::option::of(0u64..60_000),
        (1u32..10, 0u32..10, 0u64..7_200_000),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        (
            any::<bool>(),
            select(vec![
                BreakerState::Closed,
                BreakerState::HalfOpen,
                BreakerState::Open,
            ]),
        ),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                stage,
                class,
                certainty,
                retry_after,
                (attempt, deferrals, elapsed),
                (queried, idempotent, status_query),
                (spent, breaker),
                (cancelled, shipment_accepted),
            )| {
                DecisionContext {
                    stage,
                    outcome: Outcome {
                        class,
                        certainty,
                        code: None,
                        retry_after: retry_after.map(Duration::from_millis),
                    },
                    attempt,
                    deferrals,
                    elapsed: Duration::from_millis(elapsed),
                    queried,
                    capabilities: Capabilities {
                        idempotent,
                        status_query,
                    },
                    budget: if spent {
                        BudgetState::Spent
                    } else {
                        BudgetState::Available
                    },
                    breaker,
                    order: OrderFacts {
                        cancelled,
                        shipment_accepted,
                    },
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, max_global_rejects: 200_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn deterministic_failures_are_never_retried(ctx in context()) {
        prop_assume!(matches!(ctx.outcome.class, FailureClass::BusinessRejection | FailureClass::Malformed));
        prop_assume!(ctx.outcome.certainty != Certainty::Unknown);
        let decision = decide(&Policy::default_policy(), &ctx).decision;
        prop_assert!(!decision.resends(), "{decision:?}");
    }

    #[test]
    fn nothing_proceeds_past_payment_without_a_confirmed_success(ctx in context()) {
        prop_assume!(ctx.stage == Stage::Payment);
        let decision = decide(&Policy::default_policy(), &ctx).decision;
        if decision == Decision::Proceed {
            prop_assert!(ctx.outcome.is_confirmed_success(), "{ctx:?}");
        }
    }

    #[test]
    fn unknown_outcomes_never_compensate_or_refund(ctx in context()) {
        prop_assume!(ctx.outcome.certainty == Certainty::Unknown);
        let decision = decide(&Policy::default_policy(), &ctx).decision;
        prop_assert!(!matches!(decision, Decision::Compensate { .. }), "{decision:?}");
    }

    #[test]
    fn unknown_outcomes_are_resent_only_to_idempotent_downstreams(ctx in context()) {
        prop_assume!(ctx.outcome.certainty == Certainty::Unknown);
        let decision = decide(&Policy::default_policy(), &ctx).decision;
        if decision.resends() {
            prop_assert!(ctx.capabilities.idempotent, "{ctx:?} → {decision:?}");
        }
    }

    #[test]
    fn the_retry_limit_is_never_exceeded(ctx in context()) {
        let policy = Policy::default_policy();
        let decision = decide(&policy, &ctx).decision;
        if let Decision::RetryAfter { .. } = decision {
            prop_assert!(ctx.attempt < policy.downstream(ctx.stage).retry.max_attempts);
            prop_assert!(ctx.breaker != BreakerState::Open && ctx.budget == BudgetState::Available);
        }
        if let Decision::Defer { .. } = decision {
            prop_assert!(ctx.elapsed < policy.stage(ctx.stage).ambiguity_window);
        }
    }

    #[test]
    fn a_shipping_failure_never_rolls_back_earlier_stages(ctx in context()) {
        prop_assume!(ctx.stage == Stage::Shipping && !ctx.order.cancelled);
        let decision = decide(&Policy::default_policy(), &ctx).decision;
        prop_assert!(!matches!(decision, Decision::Compensate { .. }), "{decision:?}");
    }

    #[test]
    fn a_payment_failure_after_shipping_is_never_rolled_back(ctx in context()) {
        prop_assume!(ctx.stage == Stage::Payment && ctx.order.shipment_accepted);
        let decision = decide(&Policy::default_policy(), &ctx).decision;
        prop_assert!(!matches!(decision, Decision::Compensate { .. } | Decision::FailFast { .. }), "{decision:?}");
    }
}
