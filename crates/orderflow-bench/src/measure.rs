//! Figures: throughput, latency percentiles, a process's peak memory.

use serde::Serialize;
use std::time::Duration;

/// One pipeline's run.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub name: String,
    pub orders: usize,
    pub seconds: f64,
    pub orders_per_second: f64,
    pub hop_p50_ms: f64,
    pub hop_p99_ms: f64,
    /// The worker process's peak resident set (VmHWM), in MiB.
    pub worker_peak_rss_mib: f64,
}

impl Figures {
    pub fn new(
        name: &str,
        orders: usize,
        elapsed: Duration,
        mut hops_ms: Vec<f64>,
        peak_rss_kib: u64,
    ) -> Figures {
        hops_ms.sort_by(f64::total_cmp);
        let seconds = elapsed.as_secs_f64();
        Figures {
            name: name.to_owned(),
            orders,
            seconds,
            orders_per_second: orders as f64 / seconds,
            hop_p50_ms: percentile(&hops_ms, 0.50),
            hop_p99_ms: percentile(&hops_ms, 0.99),
            worker_peak_rss_mib: peak_rss_kib as f64 / 1024.0,
        }
    }
}

/// Nearest-rank percentile of sorted values (0 for none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Peak resident set size of a process in KiB, from `/proc/PID/status`.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

pub fn print_table(rows: &[&Figures], ratio: f64) {
    println!(
        "{:<10} {:>7} {:>9} {:>10} {:>12} {:>12} {:>14}",
        "pipeline", "orders", "seconds", "orders/s", "hop p50 ms", "hop p99 ms", "worker RSS MiB"
    );
    for f in rows {
        println!(
            "{:<10} {:>7} {:>9.2} {:>10.1} {:>12.2} {:>12.2} {:>14.1}",
            f.name,
            f.orders,
            f.seconds,
            f.orders_per_second,
            f.hop_p50_ms,
            f.hop_p99_ms,
            f.worker_peak_rss_mib
        );
    }
    println!("runtime / raw throughput ratio: {ratio:.2}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        assert!(peak_rss_kib(std::process::id()) > 0);
    }
}
