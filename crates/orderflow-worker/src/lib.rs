//! # orderflow-worker
//!
//! The orderflow processes: the inventory, payment and shipping workers and
//! the reconciler. Each binary is `main(Role::…)`; everything around the
//! stage logic lives here: settings, start-up checks, health and metrics
//! endpoints, logging, exit status. Operators' view: `docs/workers.md`.
//!
//! # Layout
//! - `role`: [`Role`], what distinguishes the four binaries.
//! - `config`: flags and `ORDERFLOW_*` variables, and the checks that need
//!   no network.
//! - `failure`: start-up (exit 2) versus runtime (exit 1) failures.
//! - `telemetry`: logging and the Prometheus recorder.
//! - `http`: `/healthz`, `/readyz`, `/metrics`.
//! - `contract`: the check that each downstream URL answers as its API,
//!   which holds consumption and readiness until it passes.
//! - `presence`: the heartbeat `orderctl status` reads, and the watch on
//!   whether an operator paused the stage.
//! - `run`: start-up against Redis and RabbitMQ, then the role's work.

mod config;
mod contract;
mod failure;
mod http;
mod presence;
mod role;
mod run;
mod telemetry;

pub use role::Role;

use config::Settings;
use failure::Failure;
use std::process::ExitCode;
use std::time::Duration;

/// Runs the process of `role` to its end: 0 after a clean drain, 2 for bad
/// settings or a failed start-up check, 1 for a later error.
pub fn main(role: Role) -> ExitCode {
    let settings = match Settings::parse(role, std::env::args_os()) {
        Ok(settings) => settings,
        // Usage errors exit 2, `--help` and `--version` 0, as clap decides.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match start(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            match &failure {
                // Plain text, not a log record: readable whatever the log
                // format, and the only thing an operator needs to read.
                Failure::Startup(text) => eprintln!("{}: error: {text}", role.binary()),
                Failure::Runtime(text) => tracing::error!("{text}"),
            }
            failure.exit_code()
        }
    }
}

fn start(settings: Settings) -> Result<(), Failure> {
    telemetry::init_logging(settings.common.log)?;
    // One thread: a worker's work is waiting on the broker, Redis and HTTP,
    // and a fleet scales by processes. Threads of a multi-thread runtime
    // woke each other for every hop (futex, context switches) and gave
    // glibc an arena each (measured in docs/performance.md).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the async runtime: {e}")))?;
    let ran = runtime.block_on(run::run(settings));
    // A blocking task (a DNS lookup, say) must not hold the exit up.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    ran
}

/// How long the exit waits for blocking tasks.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// The longest a stage worker takes from SIGTERM to its exit, given its
/// shutdown grace (`--shutdown-grace`): in-flight deliveries get the grace,
/// then closing the connections, the health server and the runtime each
/// have a bound of their own. An orchestrator's kill timeout
/// (`terminationGracePeriodSeconds`) must be longer.
pub fn drain_bound(shutdown_grace: Duration) -> Duration {
    shutdown_grace + run::CLOSE_ALLOWANCE + run::HTTP_DRAIN + RUNTIME_SHUTDOWN
}
