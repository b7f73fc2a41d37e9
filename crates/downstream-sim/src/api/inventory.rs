//! Inventory API: reserve stock for an order, then commit or release it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{IdempotencyKey, Reply, Wellformed, check_items, non_empty};
use crate::books::Refusal;
use crate::endpoint::Endpoint;
use crate::ledger::{Item, Reservation};
use crate::sim::{Mutation, Sim};

#[derive(Serialize, Deserialize)]
pub(crate) struct ReserveRequest {
    order_id: String,
    items: Vec<Item>,
}

impl Wellformed for ReserveRequest {
    fn check(&self) -> Result<(), String> {
        non_empty("order_id", &self.order_id)?;
        check_items(&self.items)
    }
}

/// Names the reservation a commit or release acts on, so a key reused for
/// another reservation is a mismatch.
#[derive(Serialize)]
struct ReservationRef {
    reservation_id: String,
}

pub(crate) async fn reserve(
    State(sim): State<Arc<Sim>>,
    mutation: Result<Mutation<ReserveRequest>, Reply>,
) -> Response {
    sim.mutate(
        Endpoint::InventoryReserve,
        mutation,
        |world, key, request, now| {
            let reserved = world
                .books
                .reserve(key, request.order_id, request.items, now);
            match reserved {
                Ok(reservation) => Reply::new(StatusCode::CREATED, summary(reservation)),
                Err(refusal) => Reply::refused(StatusCode::CONFLICT, refusal),
            }
        },
    )
    .await
}

pub(crate) async fn status(State(sim): State<Arc<Sim>>, Path(key): Path<String>) -> Response {
    sim.query(Endpoint::InventoryStatus, move |world, _now| {
        match world.books.reservation_by_key(&key) {
            Some(reservation) => Reply::new(
                StatusCode::OK,
                json!({
                    "reservation_id": reservation.id,
                    "order_id": reservation.order_id,
                    "status": reservation.state,
                }),
            ),
            None => Reply::refused(StatusCode::NOT_FOUND, Refusal::NotFound),
        }
    })
    .await
}

pub(crate) async fn commit(
    State(sim): State<Arc<Sim>>,
    key: Result<IdempotencyKey, Reply>,
    Path(id): Path<String>,
) -> Response {
    let mutation = on_reservation(key, id);
    sim.mutate(
        Endpoint::InventoryCommit,
        mutation,
        |world, _key, target, now| settled(world.books.commit(&target.reservation_id, now)),
    )
    .await
}

pub(crate) async fn release(
    State(sim): State<Arc<Sim>>,
    key: Result<IdempotencyKey, Reply>,
    Path(id): Path<String>,
) -> Response {
    let mutation = on_reservation(key, id);
    sim.mutate(
        Endpoint::InventoryRelease,
        mutation,
        |world, _key, target, now| settled(world.books.release(&target.reservation_id, now)),
    )
    .await
}

fn on_reservation(
    key: Result<IdempotencyKey, Reply>,
    reservation_id: String,
) -> Result<Mutation<ReservationRef>, Reply> {
    key.map(|IdempotencyKey(key)| Mutation {
        key,
        request: ReservationRef { reservation_id },
    })
}

fn settled(outcome: Result<&Reservation, Refusal>) -> Reply {
    match outcome {
        Ok(reservation) => Reply::new(StatusCode::OK, summary(reservation)),
        Err(Refusal::NotFound) => Reply::refused(StatusCode::NOT_FOUND, Refusal::NotFound),
        Err(refusal) => Reply::refused(StatusCode::CONFLICT, refusal),
    }
}

fn summary(reservation: &Reservation) -> serde_json::Value {
    json!({ "reservation_id": reservation.id, "status": reservation.state })
}
