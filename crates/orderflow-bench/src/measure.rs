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
    /// CPU seconds per 1,000 orders, by process, over the timed run.
    pub cpu_per_1000: CpuShare,
}

/// CPU seconds per 1,000 orders spent by each process of a run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuShare {
    pub worker: f64,
    pub rabbitmq: f64,
    pub redis: f64,
    /// This process: publishing the load and waiting for it.
    pub driver: f64,
}

/// What a driver reports: how long the load took, the CPU counters at the
/// moment the last order finished (before any bookkeeping), and every hop
/// latency in ms.
#[derive(Debug)]
pub struct Driven {
    pub elapsed: Duration,
    pub cpu_at_end: CpuSample,
    pub hops_ms: Vec<f64>,
}

/// CPU ticks of the processes a run involves, taken before and after it.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    worker: u64,
    rabbitmq: u64,
    redis: u64,
    driver: u64,
}

impl CpuShare {
    /// All processes together.
    pub fn total(&self) -> f64 {
        self.worker + self.rabbitmq + self.redis + self.driver
    }
}

impl CpuSample {
    pub fn take(worker_pid: u32) -> CpuSample {
        CpuSample {
            worker: cpu_ticks(worker_pid),
            rabbitmq: pid_named("beam.smp").map_or(0, cpu_ticks),
            redis: pid_named("redis-server").map_or(0, cpu_ticks),
            driver: cpu_ticks(std::process::id()),
        }
    }

    /// CPU seconds per 1,000 orders between `self` and a later sample.
    pub fn per_1000(&self, later: &CpuSample, orders: usize) -> CpuShare {
        let per = |before: u64, after: u64| {
            after.saturating_sub(before) as f64 / TICKS_PER_SECOND / orders as f64 * 1000.0
        };
        CpuShare {
            worker: per(self.worker, later.worker),
            rabbitmq: per(self.rabbitmq, later.rabbitmq),
            redis: per(self.redis, later.redis),
            driver: per(self.driver, later.driver),
        }
    }
}

/// Linux's USER_HZ, the unit of `/proc/PID/stat` times.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime of a process, in clock ticks (0 if it is gone).
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name may hold spaces: fields start after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    field(11) + field(12)
}

/// The first process whose command name is `name` (the local RabbitMQ or
/// Redis server; on another host they are not measured).
pub fn pid_named(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim() == name).then_some(pid)
        })
}

impl Figures {
    pub fn new(
        name: &str,
        orders: usize,
        elapsed: Duration,
        mut hops_ms: Vec<f64>,
        peak_rss_kib: u64,
        cpu_per_1000: CpuShare,
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
            cpu_per_1000,
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
        "{:<16} {:>7} {:>9} {:>10} {:>12} {:>12} {:>14}",
        "pipeline", "orders", "seconds", "orders/s", "hop p50 ms", "hop p99 ms", "worker RSS MiB"
    );
    for f in rows {
        println!(
            "{:<16} {:>7} {:>9.2} {:>10.1} {:>12.2} {:>12.2} {:>14.1}",
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
    println!();
    println!("CPU seconds per 1,000 orders, by process:");
    println!(
        "{:<16} {:>8} {:>9} {:>7} {:>7} {:>7}",
        "pipeline", "worker", "RabbitMQ", "Redis", "driver", "total"
    );
    for f in rows {
        let c = f.cpu_per_1000;
        let total = c.total();
        println!(
            "{:<16} {:>8.2} {:>9.2} {:>7.2} {:>7.2} {:>7.2}",
            f.name, c.worker, c.rabbitmq, c.redis, c.driver, total
        );
    }
}

/// The ceiling block: throughput and CPU-µs per order by process for the
/// runtime and each yardstick (the ceiling, the ceiling with records), and
/// the ratio of the runtime's total to each.
pub fn print_ceiling(runtime: &Figures, yardsticks: &[(&Figures, f64)]) {
    println!();
    println!("Against the ceiling (bare lapin + redis, the same hops and claims):");
    println!(
        "{:<16} {:>10} {:>26} {:>9} {:>7} {:>7} {:>7}",
        "pipeline", "orders/s", "CPU-µs per order: worker", "RabbitMQ", "Redis", "driver", "total"
    );
    for f in std::iter::once(runtime).chain(yardsticks.iter().map(|(f, _)| *f)) {
        // CPU s per 1,000 orders is CPU ms per order.
        let us = |s_per_1000: f64| s_per_1000 * 1000.0;
        let c = f.cpu_per_1000;
        println!(
            "{:<16} {:>10.1} {:>26.0} {:>9.0} {:>7.0} {:>7.0} {:>7.0}",
            f.name,
            f.orders_per_second,
            us(c.worker),
            us(c.rabbitmq),
            us(c.redis),
            us(c.driver),
            us(c.total())
        );
    }
    for (yardstick, ratio) in yardsticks {
        println!("runtime / {} CPU per order = {ratio:.1}×", yardstick.name);
    }
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
    fn this_process_has_a_peak_rss_and_cpu_time() {
        assert!(peak_rss_kib(std::process::id()) > 0);
        let start = CpuSample::take(std::process::id());
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        let share = start.per_1000(&CpuSample::take(std::process::id()), 1000);
        assert!(share.driver > 0.0, "{share:?}");
    }
}
