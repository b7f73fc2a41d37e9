//! What a stage's logic asks the runtime to do with an order: one state
//! move (or none) and the messages that follow from it. Effects are data, so
//! the runtime can record them with the move and re-emit them after a crash.

use crate::step::StepMessage;
use orderflow_broker::{Meta, Names, Outgoing, TopologySpec};
use orderflow_core::message::OrderId;
use orderflow_core::{Certainty, OrderState, Outcome, PolicyId, Stage};
use orderflow_store::FieldUpdate;
use serde::{Deserialize, Serialize};

/// The outcome of running a stage's logic for one delivery.
#[derive(Debug, Clone, Default)]
pub struct Effect {
    /// The order's next state, written by compare-and-set with the audit
    /// entry and the rendered emissions (the idempotency record).
    pub transition: Option<Planned>,
    /// What to publish once the state is written.
    pub emissions: Vec<Emission>,
    /// An audit note for a delivery that moves nothing (a re-check, a
    /// deferral), so an operator sees every decision.
    pub note: Option<Planned>,
}

/// A state move and why.
#[derive(Debug, Clone)]
pub struct Planned {
    pub to: orderflow_core::OrderState,
    pub reason: Option<String>,
    /// What happened (`stock_reserved`, `payment_pending`).
    pub event: String,
    /// The policy rule that decided it.
    pub rule: String,
    pub fields: Vec<FieldUpdate>,
}

/// A message to publish after the state is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emission {
    /// Hand the order to the next stage's work queue.
    Next { stage: Stage },
    /// Come back to this stage through delay tier `tier` (an index into
    /// the stage's `delay_tiers`; past the last, the last). `certainty` is
    /// what the run knew of its operation when it deferred, carried by the
    /// copy (`orderflow-certainty`) so the next run can tell whether it
    /// must ask before sending.
    Delay {
        tier: u32,
        certainty: Option<Certainty>,
    },
    /// Park in this stage's exception queue for a person.
    Exception {
        reason: String,
        outcome: Option<Outcome>,
        detail: Option<String>,
        /// Park the delivered message as it came (a conflicting producer
        /// message) rather than a step message of the order.
        keep_original: bool,
    },
    /// A customer-facing event on the events exchange (`order.paid`,
    /// `fulfilment.packed`).
    Event {
        routing_key: String,
        state: String,
        reason: Option<String>,
        message: String,
    },
}

/// A message ready to publish, as recorded with the state move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    pub exchange: String,
    pub routing_key: String,
    /// Every message orderflow publishes is JSON.
    pub body: String,
    pub meta: Meta,
}

impl Rendered {
    pub fn into_outgoing(self) -> Outgoing {
        Outgoing {
            exchange: self.exchange,
            routing_key: self.routing_key,
            body: self.body.into_bytes(),
            meta: self.meta,
        }
    }
}

/// What rendering needs to know about the delivery being settled.
pub struct RenderContext<'a> {
    pub spec: &'a TopologySpec,
    pub stage: Stage,
    pub order_id: &'a OrderId,
    pub correlation_id: &'a str,
    pub policy_id: &'a PolicyId,
    /// Stable per settlement: the order's version after the move, or the
    /// run count when nothing moves. Message ids derive from it, so a
    /// re-emitted message has the id it had the first time.
    pub sequence: String,
    /// The order's version as read (`None` when no order is known), and
    /// the state the settlement moves it to (it then has version + 1):
    /// each customer event carries the version at which the order entered
    /// the state it announces, and every message the version the order has
    /// once the settlement is written, so a stage can tell when the store
    /// lost writes (`crate::lost`).
    pub version: Option<u64>,
    pub moving_to: Option<OrderState>,
    /// Runs of this stage for the order so far, this one included.
    pub runs: u32,
    pub first_attempt_at: i64,
    /// When the messages are made: every message's `timestamp` property and
    /// an event's `at`.
    pub now: jiff::Timestamp,
}

/// Turns emissions into messages with deterministic ids and the
/// `orderflow-*` headers.
pub fn render(
    emissions: &[Emission],
    ctx: &RenderContext<'_>,
    original_body: &[u8],
) -> Vec<Rendered> {
    let names: &Names = ctx.spec.names();
    emissions
        .iter()
        .enumerate()
        .map(|(i, emission)| {
            let id = format!("{}.{}.{}.{i}", ctx.order_id, ctx.stage, ctx.sequence);
            let mut meta = Meta {
                message_id: Some(id.clone()),
                timestamp: u64::try_from(ctx.now.as_second()).ok(),
                correlation_id: Some(ctx.correlation_id.to_owned()),
                order_id: Some(ctx.order_id.as_str().to_owned()),
                order_version: ctx.version.map(|v| v + u64::from(ctx.moving_to.is_some())),
                ..Meta::default()
            }
            .with_policy_id(ctx.policy_id);
            match emission {
                Emission::Next { stage } => {
                    meta.stage = Some(*stage);
                    meta.attempt = Some(1);
                    Rendered {
                        exchange: String::new(),
                        routing_key: names.work_queue(*stage),
                        body: to_string(&StepMessage::new(ctx.order_id, *stage)),
                        meta,
                    }
                }
                Emission::Delay { tier, certainty } => {
                    meta.stage = Some(ctx.stage);
                    meta.attempt = Some(ctx.runs + 1);
                    meta.certainty = *certainty;
                    meta.first_attempt_at = Some(ctx.first_attempt_at);
                    Rendered {
                        exchange: String::new(),
                        routing_key: ctx.spec.delay_queue(ctx.stage, *tier).queue.clone(),
                        body: to_string(&StepMessage::new(ctx.order_id, ctx.stage)),
                        meta,
                    }
                }
                Emission::Exception {
                    reason,
                    outcome,
                    detail,
                    keep_original,
                } => {
                    meta.stage = Some(ctx.stage);
                    meta.attempt = Some(ctx.runs);
                    meta.first_attempt_at = Some(ctx.first_attempt_at);
                    meta.reason = Some(reason.clone());
                    meta.class = outcome.as_ref().map(|o| o.class);
                    meta.certainty = outcome.as_ref().map(|o| o.certainty);
                    meta.last_error = detail.clone();
                    let body = if *keep_original {
                        String::from_utf8_lossy(original_body).into_owned()
                    } else {
                        to_string(&StepMessage::new(ctx.order_id, ctx.stage))
                    };
                    Rendered {
                        exchange: String::new(),
                        routing_key: names.exception_queue(ctx.stage),
                        body,
                        meta,
                    }
                }
                Emission::Event {
                    routing_key,
                    state,
                    reason,
                    message,
                } => {
                    let version = ctx.version.map(|v| match ctx.moving_to {
                        Some(to) if to.as_str() == state => v + 1,
                        _ => v,
                    });
                    let body = serde_json::json!({
                        "event_id": id,
                        "order_id": ctx.order_id,
                        "version": version,
                        "state": state,
                        "reason": reason,
                        "message": message,
                        "at": ctx.now.to_string(),
                    });
                    Rendered {
                        exchange: names.events_exchange(),
                        routing_key: routing_key.clone(),
                        body: body.to_string(),
                        meta,
                    }
                }
            }
        })
        .collect()
}

fn to_string<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("wire types always serialize")
}
