//! Control endpoints for tests and operators: the ledger, the faults in
//! force, reset, health. Not counted in `calls` and never faulted.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Reply;
use crate::books;
use crate::ledger::Ledger;
use crate::profile::{Profile, ProfileError};
use crate::sim::{Sim, World};

pub(crate) async fn health() -> Reply {
    Reply::new(StatusCode::OK, json!({ "status": "ok" }))
}

pub(crate) async fn ledger(State(sim): State<Arc<Sim>>) -> Json<Ledger> {
    let mut world = sim.world();
    let World { books, calls, .. } = &mut *world;
    Json(books.snapshot(books::now(), calls))
}

pub(crate) async fn reset(State(sim): State<Arc<Sim>>) -> StatusCode {
    let mut world = sim.world();
    world.reset();
    sim.keys.clear();
    StatusCode::NO_CONTENT
}

pub(crate) async fn faults(State(sim): State<Arc<Sim>>) -> Json<Profile> {
    Json(sim.world().profile.clone())
}

/// Replaces faults and per-API settings mid-run; ledger, stock levels and
/// stored idempotency outcomes stay.
pub(crate) async fn replace_faults(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body)
        .map_err(|err| ProfileError::single(format_args!("JSON syntax: {err}")))
        .and_then(|value| Ok((Profile::from_value(&value)?, value.get("seed").is_some())));
    match parsed {
        Ok((profile, names_seed)) => {
            let mut world = sim.world();
            world.replace_profile(profile, names_seed);
            tracing::info!("faults replaced");
            Json(world.profile.clone()).into_response()
        }
        Err(err) => {
            let body = json!({
                "code": "invalid_profile",
                "message": err.to_string(),
                "problems": err.problems,
            });
            Reply::new(StatusCode::BAD_REQUEST, body).into_response()
        }
    }
}
