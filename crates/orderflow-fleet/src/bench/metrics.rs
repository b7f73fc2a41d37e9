//! What the bench reads from the processes themselves: the workers'
//! retry and deferral counters from `/metrics`, and CPU time and peak
//! memory from `/proc`.

use crate::local_fleet::{Children, WORKERS};
use orderflow_bench::measure::{TICKS_PER_SECOND, cpu_ticks, peak_rss_kib, pid_named};
use serde::Serialize;
use std::collections::BTreeMap;

/// Retries and deferrals of the whole fleet, from its workers' counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// In-process retries the retry budget granted.
    pub retries_granted: u64,
    /// Retries the budget refused (deferred or failed instead).
    pub retries_refused: u64,
    /// Deferrals and re-checks on the delay tiers, by stage.
    pub deferrals: BTreeMap<String, u64>,
}

/// Sums the counters of every worker's `/metrics` (a worker that does not
/// answer counts as nothing).
pub async fn scrape(addresses: &BTreeMap<&'static str, String>) -> Counters {
    let http = reqwest::Client::new();
    let mut counters = Counters::default();
    for address in addresses.values() {
        let Ok(answer) = http.get(format!("http://{address}/metrics")).send().await else {
            continue;
        };
        let Ok(text) = answer.text().await else {
            continue;
        };
        counters.add(&text);
    }
    counters
}

impl Counters {
    fn add(&mut self, exposition: &str) {
        for (name, labels, value) in samples(exposition) {
            let value = value as u64;
            match name {
                "orderflow_retries_total" => match labels.get("budget").map(String::as_str) {
                    Some("granted") => self.retries_granted += value,
                    Some("refused") => self.retries_refused += value,
                    _ => {}
                },
                "orderflow_deferrals_total" => {
                    let stage = labels.get("stage").cloned().unwrap_or_default();
                    *self.deferrals.entry(stage).or_insert(0) += value;
                }
                _ => {}
            }
        }
    }

    pub fn deferrals_total(&self) -> u64 {
        self.deferrals.values().sum()
    }
}

/// `name{a="x",b="y"} 12` lines of the Prometheus text format.
fn samples(text: &str) -> Vec<(&str, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            Some((name, labels, value))
        })
        .collect()
}

fn labels(text: &str) -> BTreeMap<String, String> {
    text.split("\",")
        .filter_map(|pair| {
            let (key, value) = pair.split_once("=\"")?;
            Some((
                key.trim_start_matches(',').trim().to_owned(),
                value.trim_end_matches('"').to_owned(),
            ))
        })
        .collect()
}

/// CPU ticks of each process group of a run, at one moment.
pub struct CpuMark(BTreeMap<&'static str, u64>);

impl CpuMark {
    /// The workers (together), the simulator, RabbitMQ and Redis when they
    /// run on this host, and this process itself (`fleet`: publishing and watching).
    pub fn take(children: &Children) -> CpuMark {
        let workers = WORKERS
            .iter()
            .filter_map(|w| children.pid(w))
            .map(cpu_ticks)
            .sum();
        let ticks = |pid: Option<u32>| pid.map_or(0, cpu_ticks);
        CpuMark(BTreeMap::from([
            ("workers", workers),
            ("simulator", ticks(children.pid("downstream-sim"))),
            ("rabbitmq", ticks(pid_named("beam.smp"))),
            ("redis", ticks(pid_named("redis-server"))),
            ("fleet", cpu_ticks(std::process::id())),
        ]))
    }

    /// CPU seconds per 1,000 orders of each group between `self` and
    /// `later`, and their total.
    pub fn per_1000(&self, later: &CpuMark, orders: usize) -> BTreeMap<String, f64> {
        let mut out: BTreeMap<String, f64> = self
            .0
            .iter()
            .map(|(group, before)| {
                let after = later.0.get(group).copied().unwrap_or(0);
                let seconds = after.saturating_sub(*before) as f64 / TICKS_PER_SECOND;
                ((*group).to_owned(), seconds / orders.max(1) as f64 * 1000.0)
            })
            .collect();
        let total = out.values().sum();
        out.insert("total".into(), total);
        out
    }
}

/// Each worker's peak resident set, in MiB.
pub fn worker_peak_rss_mib(children: &Children) -> BTreeMap<String, f64> {
    WORKERS
        .iter()
        .filter_map(|w| {
            let pid = children.pid(w)?;
            Some(((*w).to_owned(), peak_rss_kib(pid) as f64 / 1024.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_and_deferrals_are_summed_from_the_exposition() {
        let text = "# TYPE orderflow_retries_total counter\n\
            orderflow_retries_total{downstream=\"payment\",budget=\"granted\"} 7\n\
            orderflow_retries_total{downstream=\"inventory\",budget=\"granted\"} 3\n\
            orderflow_retries_total{downstream=\"payment\",budget=\"refused\"} 2\n\
            orderflow_deferrals_total{stage=\"payment\",tier=\"1\"} 4\n\
            orderflow_deferrals_total{stage=\"payment\",tier=\"2\"} 1\n\
            orderflow_up{role=\"payment\"} 1\n";
        let mut counters = Counters::default();
        counters.add(text);
        counters.add(text);
        assert_eq!(counters.retries_granted, 20);
        assert_eq!(counters.retries_refused, 4);
        assert_eq!(counters.deferrals.get("payment"), Some(&10));
        assert_eq!(counters.deferrals_total(), 10);
    }
}
