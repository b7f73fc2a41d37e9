//! One exception message as an operator reads it: its id, why it is there,
//! which order it names and what its body is.

use orderflow_broker::{Incoming, Meta};
use orderflow_core::message::{ORDER_CANCEL_V1, ORDER_PLACED_V1, OrderId};
use orderflow_core::{Certainty, FailureClass, Stage};
use orderflow_runtime::step::STEP_V1;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The header a replayed or edited copy carries its replay id in.
pub const REPLAY_ID_HEADER: &str = "orderflow-replay-id";
/// The header an edited copy names its original in.
pub const EDIT_OF_HEADER: &str = "orderflow-edit-of";
/// The header the problems of a malformed message travel in.
pub const VALIDATION_ERRORS_HEADER: &str = "orderflow-validation-errors";

/// What an exception message's body is, by its `schema` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyKind {
    /// `orderflow.step/v1`: names an order; a replay sends it back to the
    /// stage, which decides again on the order's current state.
    Step,
    /// A producer's `order.placed/v1`, as it came.
    OrderPlaced,
    /// A producer's `order.cancel/v1`, as it came.
    OrderCancel,
    /// Not JSON, or no known schema.
    Unreadable,
}

impl BodyKind {
    pub fn of(body: &[u8]) -> BodyKind {
        let schema = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("schema").and_then(Value::as_str).map(str::to_owned));
        match schema.as_deref() {
            Some(STEP_V1) => BodyKind::Step,
            Some(ORDER_PLACED_V1) => BodyKind::OrderPlaced,
            Some(ORDER_CANCEL_V1) => BodyKind::OrderCancel,
            _ => BodyKind::Unreadable,
        }
    }

    /// A producer's message (or what was meant to be one): a replay sends
    /// it to the ingress exchange rather than to a work queue.
    pub fn is_producer(self) -> bool {
        self != BodyKind::Step
    }
}

/// An exception message, read.
#[derive(Debug, Clone, Serialize)]
pub struct ExceptionMessage {
    pub stage: Stage,
    /// The message id; `body-<hash>` for a message without one (the id the
    /// stages give it too).
    pub id: String,
    /// `orderflow-reason`; `dead_lettered_<why>` for a message the broker
    /// dead-lettered from the work queue; `unknown` otherwise.
    pub reason: String,
    pub class: Option<FailureClass>,
    pub certainty: Option<Certainty>,
    /// From the header, else from the body's `order_id`.
    pub order_id: Option<String>,
    pub kind: BodyKind,
    /// `orderflow-attempt`: runs of the stage when it was parked.
    pub attempt: Option<u32>,
    /// When it was published (the AMQP `timestamp`), RFC 3339.
    pub published_at: Option<String>,
    /// Seconds since then.
    pub age_secs: Option<u64>,
    pub last_error: Option<String>,
    pub validation_errors: Option<String>,
    /// Set when it is a replayed or edited copy that came back.
    pub replay_id: Option<String>,
    pub correlation_id: Option<String>,
    /// sha256 of the body, hex.
    pub body_sha256: String,
}

impl ExceptionMessage {
    pub fn read(stage: Stage, message: &Incoming, now: jiff::Timestamp) -> ExceptionMessage {
        let meta = message.meta();
        let body = message.body();
        let reason = meta
            .reason
            .clone()
            .or_else(|| {
                message
                    .latest_death()
                    .map(|death| format!("dead_lettered_{}", death.reason))
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let published = meta
            .timestamp
            .and_then(|t| i64::try_from(t).ok())
            .and_then(|t| jiff::Timestamp::from_second(t).ok());
        ExceptionMessage {
            stage,
            id: message_id(meta, body),
            reason,
            class: meta.class,
            certainty: meta.certainty,
            order_id: meta.order_id.clone().or_else(|| body_order_id(body)),
            kind: BodyKind::of(body),
            attempt: meta.attempt,
            published_at: published.map(|t| t.to_string()),
            age_secs: published
                .map(|t| u64::try_from(now.as_second() - t.as_second()).unwrap_or_default()),
            last_error: meta.last_error.clone(),
            validation_errors: meta.extra.get(VALIDATION_ERRORS_HEADER).cloned(),
            replay_id: meta.extra.get(REPLAY_ID_HEADER).cloned(),
            correlation_id: meta.correlation_id.clone(),
            body_sha256: sha256_hex(body),
        }
    }

    /// The order this message names, if its id is a valid order id.
    pub fn order(&self) -> Option<OrderId> {
        self.order_id.as_deref().and_then(OrderId::parse)
    }
}

/// The message id, or — without one — `body-` and a hash of the body, as
/// the stage loop names such a message.
pub fn message_id(meta: &Meta, body: &[u8]) -> String {
    meta.message_id
        .clone()
        .unwrap_or_else(|| format!("body-{}", &sha256_hex(body)[..16]))
}

/// The body's `order_id`, when it is a JSON object with a valid one.
pub fn body_order_id(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let id = value.get("order_id")?.as_str()?;
    OrderId::parse(id).map(|id| id.as_str().to_owned())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
