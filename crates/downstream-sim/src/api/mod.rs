//! HTTP surface: routes, the JSON reply shape, and the extractors that turn a
//! request into a validated [`Mutation`] (or a 400 naming what is wrong).

mod control;
mod inventory;
mod payment;
mod shipping;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::books::Refusal;
use crate::ledger::Item;
use crate::sim::{Mutation, Sim};

pub(crate) fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/v1/reservations", post(inventory::reserve))
        .route("/v1/reservations/by-key/{key}", get(inventory::status))
        .route("/v1/reservations/{id}/commit", post(inventory::commit))
        .route("/v1/reservations/{id}/release", post(inventory::release))
        .route("/v1/payments", post(payment::charge))
        .route("/v1/payments/by-key/{key}", get(payment::status))
        .route("/v1/payments/{id}/refund", post(payment::refund))
        .route("/v1/shipments", post(shipping::create))
        .route("/v1/shipments/by-key/{key}", get(shipping::status))
        .route(
            "/_faults",
            get(control::faults).put(control::replace_faults),
        )
        .route("/_ledger", get(control::ledger))
        .route("/_reset", post(control::reset))
        .route("/healthz", get(control::health))
        .fallback(|| async { Reply::refused(StatusCode::NOT_FOUND, Refusal::NotFound) })
        .with_state(sim)
}

/// A status and JSON body; what the idempotency store keeps and replays.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    pub(crate) fn new(status: StatusCode, body: Value) -> Self {
        Reply { status, body }
    }

    /// The error shape every endpoint uses: `{code, message}`.
    pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Reply::new(status, json!({ "code": code, "message": message.into() }))
    }

    pub(crate) fn refused(status: StatusCode, refusal: Refusal) -> Self {
        Reply::error(status, refusal.code(), refusal.message())
    }

    fn malformed(message: impl Into<String>) -> Self {
        Reply::error(StatusCode::BAD_REQUEST, "malformed_request", message)
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// The `Idempotency-Key` header every mutating call must carry.
pub(crate) struct IdempotencyKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Reply;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Reply> {
        let key = parts
            .headers
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|key| !key.is_empty());
        match key {
            Some(key) => Ok(IdempotencyKey(key.to_owned())),
            None => Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "missing_idempotency_key",
                "every mutating call needs a non-empty Idempotency-Key header",
            )),
        }
    }
}

/// Checks beyond the JSON shape that make a request malformed (400) rather
/// than a business refusal.
pub(crate) trait Wellformed {
    fn check(&self) -> Result<(), String>;
}

/// A JSON body with its idempotency key; the key is checked first.
impl<S, T> FromRequest<S> for Mutation<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Wellformed,
{
    type Rejection = Reply;

    async fn from_request(request: Request, state: &S) -> Result<Self, Reply> {
        let (mut parts, body) = request.into_parts();
        let IdempotencyKey(key) = IdempotencyKey::from_request_parts(&mut parts, state).await?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|rejection| Reply::malformed(rejection.body_text()))?;
        let request: T = serde_json::from_slice(&bytes)
            .map_err(|err| Reply::malformed(format!("invalid JSON body: {err}")))?;
        request.check().map_err(Reply::malformed)?;
        Ok(Mutation { key, request })
    }
}

fn non_empty(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        Err(format!("{field} must not be empty"))
    } else {
        Ok(())
    }
}

fn check_items(items: &[Item]) -> Result<(), String> {
    if items.is_empty() {
        return Err("items must not be empty".to_owned());
    }
    for item in items {
        non_empty("items[].sku", &item.sku)?;
        if item.quantity == 0 {
            return Err(format!(
                "items[].quantity of {} must be at least 1",
                item.sku
            ));
        }
    }
    Ok(())
}
