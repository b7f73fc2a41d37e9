//! # orderflow-bench
//!
//! `runtime-bench` measures the runtime (consume → lease → state CAS + audit
//! → confirmed publish → ack, four no-op hops) against a raw four-hop lapin
//! pipeline on quorum queues, on the same broker in the same run, each
//! pipeline's workers in a process of their own; then the ceiling workload,
//! measured the same way, which the runtime's CPU per order is judged
//! against. Its `worker` mode is what the crash tests kill.
//!
//! # Layout
//! - [`raw`]: the raw lapin baseline (worker and driver).
//! - [`ceiling`]: the bare lapin + redis workload a no-op stage is judged by.
//! - [`runtime_pipeline`]: the same hops through the runtime.
//! - [`measure`]: throughput, percentiles, peak RSS, CPU time, the table.
//!
//! Without the default `runtime` feature only [`raw`], [`ceiling`] and
//! [`measure`] are built: `orderflow-fleet bench` measures its baseline with them.

pub mod ceiling;
pub mod measure;
pub mod raw;
#[cfg(feature = "runtime")]
pub mod runtime_pipeline;

#[cfg(feature = "runtime")]
use measure::{CpuSample, Driven, Figures, peak_rss_kib};
#[cfg(feature = "runtime")]
use orderflow_core::Policy;
#[cfg(feature = "runtime")]
use runtime_pipeline::Target;
#[cfg(feature = "runtime")]
use std::process::{Child, Command, Stdio};
#[cfg(feature = "runtime")]
use std::time::Duration;

/// What to run.
#[cfg(feature = "runtime")]
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub amqp_url: String,
    pub redis_url: String,
    pub orders: usize,
    pub prefetch: u16,
    pub concurrency: usize,
    /// Also measure the ceiling workload, bare and with the runtime's
    /// records.
    pub ceiling: bool,
    /// The `runtime-bench` binary whose `worker` mode runs each pipeline.
    pub worker_exe: std::path::PathBuf,
}

#[cfg(feature = "runtime")]
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub raw: Figures,
    pub runtime: Figures,
    /// Runtime orders/s over raw orders/s.
    pub ratio: f64,
    pub ceiling: Option<Figures>,
    /// The runtime's CPU per order (all processes) over the ceiling's.
    pub cpu_ratio_to_ceiling: Option<f64>,
    /// The ceiling with the runtime's durability writes done through its
    /// store ([`ceiling::Load::WithRecords`]).
    pub ceiling_records: Option<Figures>,
    /// The runtime's CPU per order over that of the ceiling with records.
    pub cpu_ratio_to_ceiling_records: Option<f64>,
}

/// Runs both pipelines in a fresh namespace, then (unless told not to) the
/// ceiling in one of its own, and removes them afterwards.
#[cfg(feature = "runtime")]
pub async fn run(config: &BenchConfig) -> anyhow::Result<Report> {
    let namespace = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let policy = Policy::default_policy();
    let target = Target {
        amqp_url: config.amqp_url.clone(),
        redis_url: config.redis_url.clone(),
        namespace: namespace.clone(),
    };
    let spec = orderflow_broker::TopologySpec::from_policy(&namespace, &policy)?;
    let conn = orderflow_broker::connect(&config.amqp_url).await?;
    orderflow_broker::declare(&conn, &spec).await?;
    let raw_base = format!("{namespace}.raw");
    let raw_conn = raw::connect(&config.amqp_url).await?;
    raw::declare(
        &raw_conn,
        &raw_base,
        i32::try_from(policy.broker.delivery_limit)?,
    )
    .await?;

    let result = async {
        let raw = measure_in_child(config, &["raw", "--base", &raw_base], "raw", |pid| {
            raw::drive(&config.amqp_url, &raw_base, config.orders, pid)
        })
        .await?;
        let runtime = measure_in_child(
            config,
            &["runtime", "--namespace", &namespace],
            "runtime",
            |pid| runtime_pipeline::drive(&target, &policy, config.orders, pid),
        )
        .await?;
        let ratio = runtime.orders_per_second / raw.orders_per_second;
        let (ceiling, ceiling_records) = if config.ceiling {
            (
                Some(run_ceiling(config, ceiling::Load::Hops).await?),
                Some(run_ceiling(config, ceiling::Load::WithRecords).await?),
            )
        } else {
            (None, None)
        };
        let ratio_to = |yardstick: &Option<Figures>| {
            yardstick
                .as_ref()
                .map(|y| runtime.cpu_per_1000.total() / y.cpu_per_1000.total())
        };
        anyhow::Ok(Report {
            cpu_ratio_to_ceiling: ratio_to(&ceiling),
            cpu_ratio_to_ceiling_records: ratio_to(&ceiling_records),
            raw,
            runtime,
            ratio,
            ceiling,
            ceiling_records,
        })
    }
    .await;

    let _ = raw::delete(&raw_conn, &raw_base).await;
    let _ = orderflow_broker::topology::delete(&conn, &spec).await;
    if let Ok(store) = runtime_pipeline::store(&target).await {
        let _ = store.purge_namespace().await;
    }
    result
}

/// The ceiling workload alone, in a namespace of its own removed afterwards.
#[cfg(feature = "runtime")]
pub async fn run_ceiling(config: &BenchConfig, load: ceiling::Load) -> anyhow::Result<Figures> {
    let base = format!(
        "ceiling-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let conn = raw::connect(&config.amqp_url).await?;
    ceiling::declare(&conn, &base, load).await?;
    let records = load == ceiling::Load::WithRecords;
    let mut args = vec!["ceiling", "--base", &base];
    if records {
        args.push("--records");
    }
    let name = if records {
        "ceiling+records"
    } else {
        "ceiling"
    };
    let figures = measure_in_child(config, &args, name, |pid| {
        ceiling::drive(
            &config.amqp_url,
            &config.redis_url,
            &base,
            config.orders,
            load,
            pid,
        )
    })
    .await;
    let deleted = ceiling::delete(&conn, &config.redis_url, &base, config.orders, load).await;
    let figures = figures?;
    deleted?;
    Ok(figures)
}

/// Starts the pipeline's worker process, drives the load, reads the
/// worker's peak memory, stops it.
#[cfg(feature = "runtime")]
async fn measure_in_child<F, Fut>(
    config: &BenchConfig,
    worker_args: &[&str],
    name: &str,
    drive: F,
) -> anyhow::Result<Figures>
where
    F: FnOnce(u32) -> Fut,
    Fut: Future<Output = anyhow::Result<Driven>>,
{
    let mut child = spawn_worker(config, worker_args)?;
    // Let its consumers attach before the clock starts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = CpuSample::take(child.id());
    let driven = drive(child.id()).await;
    let rss = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let driven = driven?;
    let cpu = before.per_1000(&driven.cpu_at_end, config.orders);
    Ok(Figures::new(
        name,
        config.orders,
        driven.elapsed,
        driven.hops_ms,
        rss,
        cpu,
    ))
}

#[cfg(feature = "runtime")]
fn spawn_worker(config: &BenchConfig, args: &[&str]) -> anyhow::Result<Child> {
    Ok(Command::new(&config.worker_exe)
        .arg("worker")
        .args([
            "--amqp-url",
            &config.amqp_url,
            "--redis-url",
            &config.redis_url,
        ])
        .args([
            "--prefetch",
            &config.prefetch.to_string(),
            "--concurrency",
            &config.concurrency.to_string(),
        ])
        .args(args)
        .stdin(Stdio::null())
        .spawn()?)
}
