//! The reconciler's deadline check, run by the stage that owns the order's
//! state: an order still there past the stage's `deadline` is escalated as
//! `stuck`, so nothing waits silently.

use crate::operation::{Shape, escalate, time_in_state};
use orderflow_core::Policy;
use orderflow_runtime::Effect;
use orderflow_store::OrderRecord;
use tracing::warn;

pub fn check(shape: &Shape, policy: &Policy, order: &OrderRecord) -> Effect {
    let deadline = policy.stage(shape.stage).deadline;
    let waited = time_in_state(order);
    if !shape.owns(order.state) || waited < deadline {
        // It moved since the reconciler looked.
        return Effect::default();
    }
    let detail = format!(
        "in {} for {}, past the {} stage's deadline of {}",
        order.state,
        humantime::format_duration(round_to_seconds(waited)),
        shape.stage,
        humantime::format_duration(deadline)
    );
    warn!(order_id = %order.order_id, stage = %shape.stage, %detail, "escalating a stuck order");
    escalate(
        "stuck",
        None,
        Some(detail),
        "deadline.stuck.escalate",
        vec![],
    )
}

fn round_to_seconds(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(d.as_secs())
}
