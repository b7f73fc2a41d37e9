//! Payment API: charge by test token, query by key, refund.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{IdempotencyKey, Reply, Wellformed, non_empty};
use crate::books::{Charge, Refusal};
use crate::endpoint::Endpoint;
use crate::sim::{Mutation, Sim};

#[derive(Serialize, Deserialize)]
pub(crate) struct ChargeRequest {
    order_id: String,
    /// In minor units (cents).
    amount: u64,
    currency: String,
    payment_token: String,
}

impl Wellformed for ChargeRequest {
    fn check(&self) -> Result<(), String> {
        non_empty("order_id", &self.order_id)?;
        non_empty("currency", &self.currency)?;
        if self.amount == 0 {
            return Err("amount must be at least 1 (minor units)".to_owned());
        }
        Ok(())
    }
}

/// Names the payment a refund acts on, so a key reused for another payment
/// is a mismatch.
#[derive(Serialize)]
struct PaymentRef {
    payment_id: String,
}

pub(crate) async fn charge(
    State(sim): State<Arc<Sim>>,
    mutation: Result<Mutation<ChargeRequest>, Reply>,
) -> Response {
    sim.mutate(
        Endpoint::PaymentCharge,
        mutation,
        |world, key, request, now| {
            let charge = Charge {
                order_id: request.order_id,
                amount: request.amount,
                currency: request.currency,
                payment_token: request.payment_token,
            };
            let processing_ms = world.profile.payment.processing_ms;
            match world.books.charge(key, charge, processing_ms, now) {
                Ok(payment) => Reply::new(
                    StatusCode::CREATED,
                    json!({ "payment_id": payment.id, "status": payment.state }),
                ),
                Err(refusal) => Reply::refused(StatusCode::PAYMENT_REQUIRED, refusal),
            }
        },
    )
    .await
}

pub(crate) async fn status(State(sim): State<Arc<Sim>>, Path(key): Path<String>) -> Response {
    sim.query(Endpoint::PaymentStatus, move |world, now| {
        match world.books.payment_by_key(&key, now) {
            Some(payment) => Reply::new(
                StatusCode::OK,
                json!({
                    "payment_id": payment.id,
                    "order_id": payment.order_id,
                    "status": payment.state,
                }),
            ),
            None => Reply::refused(StatusCode::NOT_FOUND, Refusal::NotFound),
        }
    })
    .await
}

pub(crate) async fn refund(
    State(sim): State<Arc<Sim>>,
    key: Result<IdempotencyKey, Reply>,
    Path(payment_id): Path<String>,
) -> Response {
    let mutation = key.map(|IdempotencyKey(key)| Mutation {
        key,
        request: PaymentRef { payment_id },
    });
    sim.mutate(
        Endpoint::PaymentRefund,
        mutation,
        |world, _key, target, now| match world.books.refund(&target.payment_id, now) {
            Ok(payment) => Reply::new(
                StatusCode::OK,
                json!({ "payment_id": payment.id, "status": payment.state }),
            ),
            Err(Refusal::NotFound) => Reply::refused(StatusCode::NOT_FOUND, Refusal::NotFound),
            Err(refusal) => Reply::refused(StatusCode::CONFLICT, refusal),
        },
    )
    .await
}
