//! Tracking an accepted shipment to delivery, when the reconciler asks: a
//! synchronous acceptance is not completion. Each new fulfilment step is
//! recorded (with since when) and announced; `delivered` commits the
//! reservation and ends the order; an `exception`, no progress past
//! `fulfilment.stall_after`, or no readable status for as long (404 past the
//! carrier's key retention, 5xx, 501, an open breaker) escalates it. The payment is looked at too: one
//! found failed or refunded after the shipment was accepted is a financial
//! exception for a person, never rolled back automatically.

use crate::Downstreams;
use crate::events::{fulfilment_event, order_event};
use crate::observe;
use crate::operation::{commit_reservation, escalate, planned};
use orderflow_core::decide::{
    DecisionContext, FulfilmentStep, track_fulfilment, track_unanswered_fulfilment,
};
use orderflow_core::{Decision, OrderState, Outcome, Stage, decide};
use orderflow_downstream::{IdempotencyKey, Operation};
use orderflow_runtime::{Effect, Env, Error, Job};
use orderflow_store::{Note, OrderRecord};
use std::time::Duration;
use tracing::warn;

pub async fn track(
    downstreams: &Downstreams,
    env: &Env,
    order: &OrderRecord,
    job: &Job,
) -> Result<Effect, Error> {
    if let Some(effect) = payment_after_shipment(downstreams, env, order, job).await {
        return Ok(effect);
    }
    let key = IdempotencyKey::new(&order.order_id, Operation::Ship);
    let answer = downstreams.shipping.shipment(&key).await;
    if let Some(what) = answer.off_contract {
        // Not the shipping API's answer (a status it does not have, a
        // page): a person must look at what the tracking URL says.
        return Ok(escalate(
            "fulfilment_status_unknown",
            None,
            Some(what),
            "fulfilment.unknown_status.escalate",
            vec![],
        ));
    }
    let Some(shipment) = answer
        .body
        .filter(|_| answer.outcome.is_confirmed_success())
    else {
        return unanswered(env, order, &answer.outcome).await;
    };
    let step: FulfilmentStep = match shipment.status.parse() {
        Ok(step) => step,
        Err(detail) => {
            return Ok(escalate(
                "fulfilment_status_unknown",
                None,
                Some(detail),
                "fulfilment.unknown_status.escalate",
                vec![],
            ));
        }
    };
    let note = Note {
        event: format!("fulfilment.{}", step.as_str()),
        reason: None,
        actor: env.actor.clone(),
        correlation_id: job.correlation_id.clone(),
        policy_id: env.policy_id.clone(),
        rule: None,
    };
    let progress = env
        .store
        .record_progress(&order.order_id, step.as_str(), &note)
        .await?;
    let since_progress = Duration::from_millis(now_ms().saturating_sub(progress.since_ms));
    let ruling = track_fulfilment(&env.policy, step, since_progress);
    let effect = match &ruling.decision {
        Decision::Proceed => match commit_unless_done(downstreams, env, order).await {
            Ok(()) => Effect {
                transition: Some(planned(
                    OrderState::Delivered,
                    None,
                    "fulfilment.delivered",
                    ruling.rule,
                    vec![],
                )),
                emissions: vec![
                    fulfilment_event(step.as_str()),
                    order_event(OrderState::Delivered, None),
                ],
                note: None,
            },
            // Delivered, but the stock is not committed yet: the next poll
            // commits it before the order ends.
            Err(_) => Effect::default(),
        },
        Decision::Escalate { reason } => {
            let detail = match &shipment.exception_code {
                Some(code) => format!("{reason}: {code}"),
                None => format!("{reason}: at {} since {since_progress:?}", step.as_str()),
            };
            escalate(reason, None, Some(detail), ruling.rule, vec![])
        }
        _ if progress.new => Effect {
            emissions: vec![fulfilment_event(step.as_str())],
            ..Effect::default()
        },
        _ => Effect::default(),
    };
    Ok(effect)
}

/// No step this time (the status query answered 404, 5xx or 501, or the
/// breaker refused it): the next poll asks again — unless the shipment has
/// gone without a new step (or, never seen, since its acceptance) for the
/// stall threshold, when it is escalated saying what the carrier answered.
async fn unanswered(env: &Env, order: &OrderRecord, outcome: &Outcome) -> Result<Effect, Error> {
    let last_step_ms = env.store.fulfilment_since_ms(&order.order_id).await?;
    let accepted_ms = u64::try_from(order.updated_at.as_millisecond()).unwrap_or(0);
    let since_ms = last_step_ms.unwrap_or(0).max(accepted_ms);
    let since_progress = Duration::from_millis(now_ms().saturating_sub(since_ms));
    let ruling = track_unanswered_fulfilment(&env.policy, since_progress);
    let Decision::Escalate { reason } = &ruling.decision else {
        return Ok(Effect::default());
    };
    let answered = match &outcome.code {
        Some(code) => format!("{} {} ({code})", outcome.class, outcome.certainty),
        None => format!("{} {}", outcome.class, outcome.certainty),
    };
    let detail = format!(
        "the carrier's status query has given no fulfilment step for {} (last answer: {answered}), past fulfilment.stall_after ({})",
        humantime::format_duration(Duration::from_secs(since_progress.as_secs())),
        humantime::format_duration(env.policy.fulfilment.stall_after),
    );
    warn!(order_id = %order.order_id, %detail, "escalating an untrackable shipment");
    Ok(escalate(
        reason,
        Some(outcome.clone()),
        Some(detail),
        ruling.rule,
        vec![],
    ))
}

fn now_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

/// The payment, looked at again after the shipment was accepted.
async fn payment_after_shipment(
    downstreams: &Downstreams,
    env: &Env,
    order: &OrderRecord,
    job: &Job,
) -> Option<Effect> {
    let key = IdempotencyKey::new(&order.order_id, Operation::Charge);
    let answer = downstreams.payment.payment(&key).await;
    let mut ctx = DecisionContext::first_attempt(&env.policy, Stage::Payment, answer.outcome);
    ctx.queried = true;
    ctx.order.shipment_accepted = true;
    let ruling = decide(&env.policy, &ctx);
    let Decision::Escalate { reason } = &ruling.decision else {
        return None;
    };
    observe::decision(env, order, job, &ctx, &ruling);
    Some(escalate(
        reason,
        Some(ctx.outcome.clone()),
        None,
        ruling.rule,
        vec![],
    ))
}

/// The shipping stage commits the reservation when the carrier accepts the
/// shipment; only a commit it could not confirm is made here.
async fn commit_unless_done(
    downstreams: &Downstreams,
    env: &Env,
    order: &OrderRecord,
) -> Result<(), String> {
    if order.reservation_committed {
        return Ok(());
    }
    commit_reservation(downstreams, env, order).await
}
