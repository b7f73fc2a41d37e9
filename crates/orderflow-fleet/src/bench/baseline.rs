//! `--baseline raw|ceiling|ceiling-events|ceiling-contract`: a bare
//! workload of `orderflow-bench` measured beside the fleet in the same run —
//! the raw lapin 4-hop pipeline, the ceiling (the same hops with the claims
//! and compare-and-sets a stage must make, in lapin and redis directly), the
//! ceiling with the fleet's six customer events per order, or the ceiling
//! with those events and the runtime's durability writes (the fleet's
//! contract done bare, its HTTP calls aside). Its worker is a
//! process of its own (this binary started again as `orderflow-fleet
//! bench-baseline-worker`), driven with as many orders as the fleet, in
//! queues (and keys) of its own removed afterwards.

use clap::{Args, ValueEnum};
use orderflow_bench::measure::{CpuSample, Driven, Figures, peak_rss_kib};
use orderflow_bench::{ceiling, raw};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `x-delivery-limit` of the raw queues: the default policy's.
const DELIVERY_LIMIT: i32 = 10;

/// What a run is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Baseline {
    /// The raw lapin 4-hop pipeline of orderflow-bench (consume, publish
    /// with confirm, ack).
    Raw,
    /// The ceiling: four quorum hops with ten Redis round trips per order
    /// (claims and compare-and-sets), in lapin and redis directly — the
    /// bare work a stage must do, which CPU per order is judged against.
    Ceiling,
    /// The ceiling plus the six customer events a `happy` order publishes,
    /// each confirmed into a stream through a topic exchange before its
    /// hop's ack.
    CeilingEvents,
    /// The ceiling with the events and, at every hop, the runtime's
    /// durability writes through its store (lease, fenced compare-and-set
    /// with the audit entry and idempotency record, the fleet's audit copy
    /// and index): the fleet's contract done bare, its HTTP calls aside.
    CeilingContract,
}

impl Baseline {
    fn name(self) -> &'static str {
        match self {
            Baseline::Raw => "raw",
            Baseline::Ceiling => "ceiling",
            Baseline::CeilingEvents => "ceiling-events",
            Baseline::CeilingContract => "ceiling-contract",
        }
    }

    /// The ceiling's load, for the ceiling workloads.
    fn load(self) -> Option<ceiling::Load> {
        match self {
            Baseline::Raw => None,
            Baseline::Ceiling => Some(ceiling::Load::Hops),
            Baseline::CeilingEvents => Some(ceiling::Load::WithEvents),
            Baseline::CeilingContract => Some(ceiling::Load::Contract),
        }
    }
}

/// A baseline's worker process (internal to `bench --baseline`).
#[derive(Debug, Args)]
pub struct BaselineWorkerArgs {
    #[arg(long, value_enum)]
    pub workload: Baseline,
    /// Prefix of the workload's queues (and, for the ceiling, keys).
    #[arg(long)]
    pub base: String,
    #[arg(long)]
    pub amqp_url: String,
    #[arg(long)]
    pub redis_url: String,
    /// Unacked deliveries per consumer of the raw pipeline (as
    /// `runtime-bench`).
    #[arg(long, default_value_t = 64)]
    pub prefetch: u16,
    /// Deliveries handled at once per hop of the raw pipeline (as
    /// `runtime-bench`).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

/// Runs the workload's consumers until SIGINT (or SIGKILL from the bench).
pub fn run_worker(args: BaselineWorkerArgs) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let result = runtime.block_on(async move {
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        match args.workload.load() {
            None => {
                raw::worker(
                    &args.amqp_url,
                    &args.base,
                    args.prefetch,
                    args.concurrency,
                    shutdown,
                )
                .await
            }
            Some(load) => {
                ceiling::worker(&args.amqp_url, &args.redis_url, &args.base, load, shutdown).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-baseline-worker: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Moves `orders` orders through the workload in a namespace of its own
/// and removes its queues (and keys) afterwards.
pub async fn measure(
    workload: Baseline,
    amqp_url: &str,
    redis_url: &str,
    orders: usize,
) -> Result<Figures, String> {
    let name = workload.name();
    let fail = |e: anyhow::Error| format!("{name} baseline: {e:#}");
    let base = format!(
        "bench-{name}-{}-{}",
        jiff::Timestamp::now().as_second(),
        std::process::id()
    );
    let conn = raw::connect(amqp_url)
        .await
        .map_err(|e| format!("{name} baseline: cannot reach RabbitMQ: {e:#}"))?;
    match workload.load() {
        None => raw::declare(&conn, &base, DELIVERY_LIMIT).await,
        Some(load) => ceiling::declare(&conn, &base, load).await,
    }
    .map_err(fail)?;
    let result = drive(workload, amqp_url, redis_url, &base, orders).await;
    let deleted = match workload.load() {
        None => raw::delete(&conn, &base).await,
        Some(load) => ceiling::delete(&conn, redis_url, &base, orders, load).await,
    };
    orderflow_broker::close(&conn, "done").await;
    let figures = result?;
    deleted.map_err(fail)?;
    Ok(figures)
}

async fn drive(
    workload: Baseline,
    amqp_url: &str,
    redis_url: &str,
    base: &str,
    orders: usize,
) -> Result<Figures, String> {
    let name = workload.name();
    let exe = std::env::current_exe().map_err(|e| format!("{name} baseline: {e}"))?;
    let mut worker = Command::new(exe)
        .args(["bench-baseline-worker", "--workload", name, "--base", base])
        .args(["--amqp-url", amqp_url, "--redis-url", redis_url])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("{name} baseline: cannot start its worker: {e}"))?;
    // Let its consumers attach before the clock starts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = CpuSample::take(worker.id());
    let driven: anyhow::Result<Driven> = match workload.load() {
        None => raw::drive(amqp_url, base, orders, worker.id()).await,
        Some(load) => ceiling::drive(amqp_url, redis_url, base, orders, load, worker.id()).await,
    };
    let rss = peak_rss_kib(worker.id());
    let _ = worker.kill();
    let _ = worker.wait();
    let driven = driven.map_err(|e| format!("{name} baseline: {e:#}"))?;
    let cpu = before.per_1000(&driven.cpu_at_end, orders);
    Ok(Figures::new(
        name,
        orders,
        driven.elapsed,
        driven.hops_ms,
        rss,
        cpu,
    ))
}
