//! # Layout
//!
//! `downstream-sim` plays the three downstream HTTP APIs of the orderflow
//! fleet — inventory, payment, shipping — with injectable faults, and keeps a
//! ground-truth [`ledger::Ledger`] of what really happened so tests can hold
//! the fleet's view against reality. The contract is `docs/downstream-api.md`.
//!
//! - [`run`]: serves the simulator on a bound listener until shutdown;
//!   [`start`]: one in this process on a free port, for tests.
//! - [`profile`]: the profile (per-API capabilities, stock, faults), read from
//!   TOML or JSON and validated with every problem named.
//! - [`endpoint`]: the APIs and the endpoint names faults and counts use.
//! - [`ledger`]: the public, serde-able ledger records.
//! - `books`: business state and rules (stock, tokens, fulfilment steps).
//! - `faults`: drawing a request's fault, fault responses, capacity limits.
//! - `idempotency`: stored outcomes per `Idempotency-Key`.
//! - `sim`: shared state and the path every downstream request takes.
//! - `api`: routes and handlers — `inventory`, `payment`, `shipping`, and
//!   `control` (`/_ledger`, `/_faults`, `/_reset`, `/healthz`).

mod api;
mod books;
pub mod endpoint;
mod faults;
mod idempotency;
pub mod ledger;
pub mod profile;
mod sim;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use endpoint::{Api, Endpoint};
pub use ledger::Ledger;
pub use profile::{Profile, ProfileError};

/// Serves the simulator on `listener` with `profile` until `shutdown`
/// completes. Responses held back by timeout faults are released at shutdown
/// so it never waits out a hang.
pub async fn run<F>(listener: TcpListener, profile: Profile, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (stopping, stop_watch) = watch::channel(false);
    let sim = Arc::new(sim::Sim::new(profile, stop_watch));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("downstream-sim listening on {addr}");
    }
    axum::serve(listener, api::router(sim))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.send_replace(true);
        })
        .await
}

/// A simulator serving in this process on a free loopback port, for tests
/// of the fleet and of the simulator itself. It stops when dropped.
pub struct Running {
    base_url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

/// Starts a simulator with `profile` on `127.0.0.1:0`.
pub async fn start(profile: Profile) -> std::io::Result<Running> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run(listener, profile, async {
        let _ = stopped.await;
    }));
    Ok(Running {
        base_url,
        _stop: stop,
    })
}
