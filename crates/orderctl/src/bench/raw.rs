//! `--baseline raw`: the raw lapin 4-hop pipeline of `orderflow-bench` on
//! the same broker, its worker a process of its own (orderctl started again
//! as `orderctl bench-raw-worker`), driven with as many orders as the fleet.

use clap::Args;
use orderflow_bench::measure::{CpuSample, Figures, peak_rss_kib};
use orderflow_bench::raw;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `x-delivery-limit` of the raw queues: the default policy's.
const DELIVERY_LIMIT: i32 = 10;

/// The raw pipeline's worker process (internal to `bench --baseline raw`).
#[derive(Debug, Args)]
pub struct RawWorkerArgs {
    /// Prefix of the pipeline's queues.
    #[arg(long)]
    pub base: String,
    #[arg(long)]
    pub amqp_url: String,
    /// Unacked deliveries per consumer (as `runtime-bench`).
    #[arg(long, default_value_t = 64)]
    pub prefetch: u16,
    /// Deliveries handled at once per hop (as `runtime-bench`).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

/// Runs the raw pipeline's four consumers until SIGINT (or SIGKILL from
/// the bench).
pub fn run_worker(args: RawWorkerArgs) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let result = runtime.block_on(async move {
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        raw::worker(
            &args.amqp_url,
            &args.base,
            args.prefetch,
            args.concurrency,
            shutdown,
        )
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-raw-worker: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Moves `orders` messages through the raw pipeline in a namespace of its
/// own and removes its queues afterwards.
pub async fn measure(amqp_url: &str, orders: usize) -> Result<Figures, String> {
    let base = format!(
        "bench-raw-{}-{}",
        jiff::Timestamp::now().as_second(),
        std::process::id()
    );
    let conn = raw::connect(amqp_url)
        .await
        .map_err(|e| format!("raw baseline: cannot reach RabbitMQ: {e:#}"))?;
    raw::declare(&conn, &base, DELIVERY_LIMIT)
        .await
        .map_err(|e| format!("raw baseline: {e:#}"))?;
    let result = drive(amqp_url, &base, orders).await;
    let _ = raw::delete(&conn, &base).await;
    let _ = conn.close(200, "done".into()).await;
    result
}

async fn drive(amqp_url: &str, base: &str, orders: usize) -> Result<Figures, String> {
    let exe = std::env::current_exe().map_err(|e| format!("raw baseline: {e}"))?;
    let mut worker = Command::new(exe)
        .args(["bench-raw-worker", "--base", base, "--amqp-url", amqp_url])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("raw baseline: cannot start its worker: {e}"))?;
    // Let its consumers attach before the clock starts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = CpuSample::take(worker.id());
    let driven = raw::drive(amqp_url, base, orders, worker.id()).await;
    let rss = peak_rss_kib(worker.id());
    let _ = worker.kill();
    let _ = worker.wait();
    let driven = driven.map_err(|e| format!("raw baseline: {e:#}"))?;
    let cpu = before.per_1000(&driven.cpu_at_end, orders);
    Ok(Figures::new(
        "raw",
        orders,
        driven.elapsed,
        driven.hops_ms,
        rss,
        cpu,
    ))
}
