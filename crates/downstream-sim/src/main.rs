//! The `downstream-sim` binary: reads flags and the profile, binds, serves.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use downstream_sim::Profile;
use tracing_subscriber::EnvFilter;

/// Plays the inventory, payment and shipping APIs with injectable faults and
/// a ground-truth ledger (GET /_ledger).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "ORDERFLOW_SIM_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Profile file (TOML, or JSON when it ends in .json); defaults apply without one.
    #[arg(long, env = "ORDERFLOW_SIM_PROFILE")]
    profile: Option<PathBuf>,
    /// Seed for fault and fulfilment draws; overrides the profile's seed.
    #[arg(long)]
    seed: Option<u64>,
}

/// Exit code for a profile that cannot be used, the same as for bad flags.
const BAD_PROFILE: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    let mut profile = match &args.profile {
        Some(path) => match Profile::load(path) {
            Ok(profile) => profile,
            Err(err) => {
                eprintln!("downstream-sim: {}: {err}", path.display());
                return ExitCode::from(BAD_PROFILE);
            }
        },
        None => Profile::default(),
    };
    if let Some(seed) = args.seed {
        profile.seed = seed;
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("downstream-sim: cannot listen on {}: {err}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    match downstream_sim::run(listener, profile, stop_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("downstream-sim: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("stopping");
}
