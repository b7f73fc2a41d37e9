//! One log line and one set of counters per decision, so an operator can
//! follow every order and a dashboard can group decisions by class.

use orderflow_core::decide::DecisionContext;
use orderflow_core::{Decision, Ruling};
use orderflow_runtime::{Env, Job};
use orderflow_store::OrderRecord;
use tracing::info;

pub fn decision(env: &Env, order: &OrderRecord, job: &Job, ctx: &DecisionContext, ruling: &Ruling) {
    let stage = ctx.stage.as_str();
    let class = ctx.outcome.class.as_str();
    let certainty = ctx.outcome.certainty.as_str();
    let decision = ruling.decision.name();
    info!(
        order_id = %order.order_id,
        correlation_id = %job.correlation_id,
        stage,
        attempt = ctx.attempt,
        run = job.runs,
        class,
        certainty,
        code = ctx.outcome.code.as_deref().unwrap_or(""),
        decision = %ruling.decision,
        rule = ruling.rule,
        policy_id = %env.policy_id,
        "decision"
    );
    metrics::counter!(
        "orderflow_decisions_total",
        "stage" => stage, "class" => class, "certainty" => certainty, "decision" => decision
    )
    .increment(1);
    match &ruling.decision {
        Decision::Escalate { reason } | Decision::Block { reason } => {
            metrics::counter!(
                "orderflow_escalations_total",
                "stage" => stage, "decision" => decision, "reason" => reason_label(reason)
            )
            .increment(1);
        }
        Decision::Defer { tier, .. } | Decision::ParkPending { tier, .. } => {
            metrics::counter!(
                "orderflow_deferrals_total",
                "stage" => stage, "tier" => tier.to_string()
            )
            .increment(1);
        }
        _ => {}
    }
}

/// The reason without the provider code after `:`, so labels stay few.
fn reason_label(reason: &str) -> String {
    reason.split(':').next().unwrap_or(reason).to_owned()
}
