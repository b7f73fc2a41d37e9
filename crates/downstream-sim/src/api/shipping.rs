//! Shipping API: accept a shipment, then report its fulfilment by key.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Reply, Wellformed, check_items, non_empty};
use crate::books::{Consignment, Refusal, ShippingRules};
use crate::endpoint::Endpoint;
use crate::ledger::Item;
use crate::sim::{Mutation, Sim, World};

#[derive(Serialize, Deserialize)]
pub(crate) struct ShipmentRequest {
    order_id: String,
    address: Address,
    items: Vec<Item>,
}

/// Empty fields are a business refusal (422 `invalid_address`), not malformed.
#[derive(Serialize, Deserialize)]
struct Address {
    name: String,
    line1: String,
    city: String,
    postal_code: String,
    country: String,
}

impl Wellformed for ShipmentRequest {
    fn check(&self) -> Result<(), String> {
        non_empty("order_id", &self.order_id)?;
        check_items(&self.items)
    }
}

pub(crate) async fn create(
    State(sim): State<Arc<Sim>>,
    mutation: Result<Mutation<ShipmentRequest>, Reply>,
) -> Response {
    sim.mutate(
        Endpoint::ShippingCreate,
        mutation,
        |world, key, request, now| {
            let World {
                profile,
                rng,
                books,
                ..
            } = world;
            let rules = ShippingRules {
                unsupported_countries: &profile.shipping.unsupported_countries,
                fulfilment_step_ms: profile.shipping.fulfilment_step_ms,
                fulfilment_exception: profile.shipping.fulfilment_exception,
            };
            let ShipmentRequest {
                order_id, address, ..
            } = request;
            let consignment = Consignment {
                order_id,
                name: address.name,
                line1: address.line1,
                city: address.city,
                postal_code: address.postal_code,
                country: address.country,
            };
            match books.ship(key, consignment, &rules, rng, now) {
                Ok(shipment) => Reply::new(
                    StatusCode::ACCEPTED,
                    json!({ "shipment_id": shipment.id, "status": shipment.state }),
                ),
                Err(refusal) => Reply::refused(StatusCode::UNPROCESSABLE_ENTITY, refusal),
            }
        },
    )
    .await
}

pub(crate) async fn status(State(sim): State<Arc<Sim>>, Path(key): Path<String>) -> Response {
    sim.query(Endpoint::ShippingStatus, move |world, now| {
        match world.books.shipment_by_key(&key, now) {
            Some(shipment) => {
                let mut body = json!({
                    "shipment_id": shipment.id,
                    "order_id": shipment.order_id,
                    "status": shipment.state,
                });
                if let Some(code) = &shipment.exception_code {
                    body["exception_code"] = json!(code);
                }
                Reply::new(StatusCode::OK, body)
            }
            None => Reply::refused(StatusCode::NOT_FOUND, Refusal::NotFound),
        }
    })
    .await
}
