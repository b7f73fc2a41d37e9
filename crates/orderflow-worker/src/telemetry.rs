//! Logs to stderr (text or JSON, filtered by RUST_LOG) and the Prometheus
//! recorder behind `/metrics`.

use crate::config::LogFormat;
use crate::failure::Failure;
use crate::role::Role;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use orderflow_core::policy::PolicyId;
use std::io::IsTerminal;
use std::time::Duration;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Installs the process's logger. A RUST_LOG that does not parse is a bad
/// setting: silently logging at another level would hide what was asked for.
pub fn init_logging(format: LogFormat) -> Result<(), Failure> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .map_err(|e| {
            Failure::setting(
                "RUST_LOG",
                e,
                "give a filter such as `info` or `info,orderflow_runtime=debug`",
            )
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        // Colours only for a person at a terminal, never into log files.
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| Failure::Runtime(format!("cannot install the logger: {e}")))
}

/// Bucket bounds of every `*_seconds` histogram, from a fast local call to
/// a downstream timeout. Buckets rather than the exporter's default
/// summaries: bucket counts add up across replicas, quantiles do not.
const SECONDS_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histograms are compacted: without a background listener the
/// recorder relies on its owner for this upkeep.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide metrics recorder (once: a second install
/// fails) and publishes what identifies this process. Call inside the
/// runtime: it spawns the recorder's upkeep.
pub fn install_metrics(role: Role, policy_id: &PolicyId) -> Result<PrometheusHandle, Failure> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| Failure::Runtime(format!("cannot install the metrics recorder: {e}")))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    metrics::describe_gauge!("orderflow_up", "1 while the process runs.");
    metrics::describe_gauge!(
        "orderflow_policy_info",
        "The policy this process decides by (1, labelled with its id): two ids in one fleet mean mixed policies."
    );
    metrics::gauge!("orderflow_up", "role" => role.as_str()).set(1.0);
    metrics::gauge!(
        "orderflow_policy_info",
        "policy_id" => policy_id.to_string(),
        "role" => role.as_str()
    )
    .set(1.0);
    Ok(handle)
}
