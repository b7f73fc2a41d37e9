//! `/healthz`, `/readyz` and `/metrics`.
//!
//! Liveness and readiness are separate on purpose: a worker whose Redis is
//! down is alive (it waits the outage out without acknowledging anything,
//! so restarting it helps nobody) but not ready — also while Redis answers
//! pings but refuses its writes (out of memory, read-only).

use crate::role::Role;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use orderflow_core::policy::PolicyId;
use orderflow_store::Store;
use serde_json::json;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A store slower than this to answer a ping counts as not answering.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` reports on.
#[derive(Debug)]
pub struct Readiness {
    role: Role,
    policy_id: PolicyId,
    /// Set once the start-up checks have passed.
    store: OnceLock<Store>,
    /// Cancelled when the process starts draining.
    draining: CancellationToken,
    /// Why a downstream URL is not the contract's API yet, while it is not.
    downstreams: Mutex<Option<String>>,
}

impl Readiness {
    pub fn new(role: Role, policy_id: PolicyId, draining: CancellationToken) -> Readiness {
        Readiness {
            role,
            policy_id,
            store: OnceLock::new(),
            draining,
            downstreams: Mutex::new(None),
        }
    }

    /// What the downstream contract check found: `None` once every URL
    /// answered as its API.
    pub fn downstreams(&self, problem: Option<String>) {
        *self.downstreams.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }

    /// The start-up checks passed; from now on readiness is the store's.
    pub fn started(&self, store: Store) {
        let _ = self.store.set(store);
    }

    async fn check(&self) -> Result<(), String> {
        if self.draining.is_cancelled() {
            return Err("shutting down".to_owned());
        }
        let Some(store) = self.store.get() else {
            return Err("starting: start-up checks have not passed yet".to_owned());
        };
        if let Some(problem) = &*self.downstreams.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(problem.clone());
        }
        // Redis answers pings but refuses the work (out of memory,
        // read-only): deliveries are held meanwhile.
        if let Some((waiting, said)) = orderflow_runtime::waiting_on_redis() {
            return Err(format!(
                "redis: {waiting} deliveries held until it takes the work again ({said})"
            ));
        }
        match tokio::time::timeout(PING_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("redis: {e}")),
            Err(_) => Err(format!(
                "redis: no answer to a ping within {PING_TIMEOUT:?}"
            )),
        }
    }
}

#[derive(Clone)]
struct Shared {
    readiness: Arc<Readiness>,
    metrics: PrometheusHandle,
}

pub fn router(readiness: Arc<Readiness>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(Shared { readiness, metrics })
}

/// Serves until `stop`, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// The process is running and its runtime answers.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    let readiness = &shared.readiness;
    let role = readiness.role.as_str();
    match readiness.check().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"ready": true, "role": role, "policy_id": readiness.policy_id})),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "role": role, "reason": reason})),
        ),
    }
}

async fn render_metrics(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}
