//! What a bench prints: one column per run (policy) side by side, the raw
//! baseline and its ratio, then every invariant violation; or all of it as
//! JSON.

use super::metrics::Counters;
use crate::local_fleet::figures::Outcome;
use downstream_sim::Ledger;
use orderflow_bench::measure::Figures;
use orderflow_console::table::Table;
use orderflow_verify::Violation;
use serde::Serialize;
use std::collections::BTreeMap;

/// The three downstream APIs, in the order of the workflow.
const APIS: [&str; 3] = ["inventory", "payment", "shipping"];

/// Violations listed per run in the table; `--json` has them all.
const LISTED: usize = 20;

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub profile: String,
    pub orders: usize,
    pub seed: u64,
    pub runs: Vec<RunReport>,
    /// `--baseline raw`: the raw lapin 4-hop pipeline, same broker, same
    /// number of orders.
    pub raw: Option<Figures>,
    /// `--baseline ceiling`: the bare lapin + redis workload, same broker
    /// and Redis, same number of orders.
    pub ceiling: Option<Figures>,
    /// `--baseline ceiling-events`: the ceiling with the fleet's six
    /// customer events per order.
    pub ceiling_events: Option<Figures>,
    /// `--baseline ceiling-contract`: the ceiling with those events and the
    /// runtime's durability writes at every hop.
    pub ceiling_contract: Option<Figures>,
}

/// One run of the fleet under one policy.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub policy: String,
    pub policy_source: String,
    pub policy_id: String,
    pub namespace: String,
    /// Whether every order settled before the time was up.
    pub settled: bool,
    /// From the first publish until every order settled.
    pub seconds: f64,
    pub orders_per_second: f64,
    /// Fleet orders/s over raw orders/s (`--baseline raw`).
    pub ratio_to_raw: Option<f64>,
    /// The fleet's CPU per order, all processes, over the ceiling's
    /// (`--baseline ceiling`).
    pub cpu_ratio_to_ceiling: Option<f64>,
    /// The same over the ceiling with the fleet's events
    /// (`--baseline ceiling-events`).
    pub cpu_ratio_to_ceiling_events: Option<f64>,
    /// The same over the ceiling with the events and the runtime's writes
    /// (`--baseline ceiling-contract`).
    pub cpu_ratio_to_ceiling_contract: Option<f64>,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Requests the simulator received, by endpoint.
    pub calls: BTreeMap<String, u64>,
    /// Requests per order, by API (stage).
    pub calls_per_order: BTreeMap<String, f64>,
    #[serde(flatten)]
    pub counters: Counters,
    pub exceptions: BTreeMap<String, usize>,
    pub violations_by_invariant: BTreeMap<String, usize>,
    pub violations: Vec<String>,
    /// Timed phases put in force: `(seconds, name)`.
    pub phases: Vec<(f64, String)>,
    /// CPU seconds per 1,000 orders: workers, simulator, RabbitMQ, Redis,
    /// this process (`fleet`), total.
    pub cpu_seconds_per_1000: BTreeMap<String, f64>,
    pub worker_peak_rss_mib: BTreeMap<String, f64>,
}

/// Requests by endpoint, and per order by API, from the ledger's `calls`.
pub fn calls(ledger: &Ledger, orders: usize) -> (BTreeMap<String, u64>, BTreeMap<String, f64>) {
    let calls: BTreeMap<String, u64> = ledger
        .calls
        .iter()
        .map(|(endpoint, n)| (endpoint.name().to_owned(), *n))
        .collect();
    let per_order = APIS
        .iter()
        .map(|api| {
            let n: u64 = ledger
                .calls
                .iter()
                .filter(|(endpoint, _)| endpoint.api().name() == *api)
                .map(|(_, n)| n)
                .sum();
            ((*api).to_owned(), n as f64 / orders.max(1) as f64)
        })
        .collect();
    (calls, per_order)
}

/// A baseline's figures on one line.
fn baseline_line(figures: &Figures) -> String {
    let cpu = &figures.cpu_per_1000;
    format!(
        "{:.1} orders/s ({} orders in {:.2} s, hop p50 {:.2} ms, p99 {:.2} ms, worker RSS {:.1} MiB); CPU s / 1,000 orders {:.2} (worker {:.2}, RabbitMQ {:.2}, Redis {:.2}, driver {:.2})",
        figures.orders_per_second,
        figures.orders,
        figures.seconds,
        figures.hop_p50_ms,
        figures.hop_p99_ms,
        figures.worker_peak_rss_mib,
        cpu.total(),
        cpu.worker,
        cpu.rabbitmq,
        cpu.redis,
        cpu.driver
    )
}

/// Counts by invariant (`I2` → 3).
pub fn by_invariant(violations: &[Violation]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for violation in violations {
        *out.entry(violation.invariant.to_owned()).or_insert(0) += 1;
    }
    out
}

/// A run's CPU per order as a multiple of one baseline's.
type RatioOf = fn(&RunReport) -> Option<f64>;

impl BenchReport {
    pub fn print(&self) {
        println!(
            "== orderflow-fleet bench: {} orders, profile {}, seed {} ==\n",
            self.orders, self.profile, self.seed
        );
        let mut header = vec![""];
        header.extend(self.runs.iter().map(|r| r.policy.as_str()));
        let mut table = Table::new(&header);
        let mut row = |name: &str, cell: &dyn Fn(&RunReport) -> String| {
            let mut cells = vec![name.to_owned()];
            cells.extend(self.runs.iter().map(cell));
            table.row(cells);
        };
        row("policy", &|r| {
            format!("{} ({})", r.policy_id, r.policy_source)
        });
        row("orders/s", &|r| format!("{:.1}", r.orders_per_second));
        row("seconds", &|r| {
            let late = if r.settled { "" } else { " (timed out)" };
            format!("{:.2}{late}", r.seconds)
        });
        row("time to final state p50 / p99 ms", &|r| {
            format!("{} / {}", r.outcome.p50_ms, r.outcome.p99_ms)
        });
        row("final states", &|r| r.outcome.states_line());
        for api in APIS {
            row(&format!("calls per order: {api}"), &|r| {
                let per_order = |n: u64| n as f64 / self.orders.max(1) as f64;
                let endpoints: Vec<String> = r
                    .calls
                    .iter()
                    .filter(|(endpoint, n)| endpoint.starts_with(api) && **n > 0)
                    .map(|(endpoint, n)| {
                        let short = endpoint.split('.').nth(1).unwrap_or(endpoint);
                        format!("{short} {:.2}", per_order(*n))
                    })
                    .collect();
                format!(
                    "{:.2} ({})",
                    r.calls_per_order.get(api).copied().unwrap_or(0.0),
                    endpoints.join(", ")
                )
            });
        }
        row("retries granted / refused", &|r| {
            format!(
                "{} / {}",
                r.counters.retries_granted, r.counters.retries_refused
            )
        });
        row("deferrals", &|r| {
            let by_stage: Vec<String> = r
                .counters
                .deferrals
                .iter()
                .map(|(stage, n)| format!("{stage} {n}"))
                .collect();
            if by_stage.is_empty() {
                "0".into()
            } else {
                format!("{} ({})", r.counters.deferrals_total(), by_stage.join(", "))
            }
        });
        let mut reasons: Vec<&String> = self
            .runs
            .iter()
            .flat_map(|r| r.outcome.reasons.keys())
            .collect();
        reasons.sort();
        reasons.dedup();
        for reason in reasons {
            row(&format!("why: {reason}"), &|r| {
                r.outcome
                    .reasons
                    .get(reason)
                    .copied()
                    .unwrap_or(0)
                    .to_string()
            });
        }
        let mut exceptions: Vec<&String> =
            self.runs.iter().flat_map(|r| r.exceptions.keys()).collect();
        exceptions.sort();
        exceptions.dedup();
        if exceptions.is_empty() {
            row("exception queues", &|_| "empty".into());
        }
        for reason in exceptions {
            row(&format!("exceptions: {reason}"), &|r| {
                r.exceptions.get(reason).copied().unwrap_or(0).to_string()
            });
        }
        row("CPU s / 1,000 orders", &|r| {
            let cpu = &r.cpu_seconds_per_1000;
            let get = |k: &str| cpu.get(k).copied().unwrap_or(0.0);
            format!(
                "{:.2} (workers {:.2}, sim {:.2}, RabbitMQ {:.2}, Redis {:.2}, orderflow-fleet {:.2})",
                get("total"),
                get("workers"),
                get("simulator"),
                get("rabbitmq"),
                get("redis"),
                get("fleet")
            )
        });
        row("worker peak RSS MiB (largest)", &|r| {
            let largest = r
                .worker_peak_rss_mib
                .iter()
                .max_by(|a, b| a.1.total_cmp(b.1));
            largest.map_or("-".into(), |(w, mib)| format!("{mib:.1} ({w})"))
        });
        row("invariant violations", &|r| {
            if r.violations.is_empty() {
                "none".into()
            } else {
                r.violations_by_invariant
                    .iter()
                    .map(|(i, n)| format!("{i} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        });
        if self.raw.is_some() {
            row("ratio to raw lapin 4-hop", &|r| {
                r.ratio_to_raw.map_or("-".into(), |x| format!("{x:.3}"))
            });
        }
        let ratios: [(&str, bool, RatioOf); 3] = [
            ("CPU per order / ceiling's", self.ceiling.is_some(), |r| {
                r.cpu_ratio_to_ceiling
            }),
            (
                "CPU per order / ceiling+events'",
                self.ceiling_events.is_some(),
                |r| r.cpu_ratio_to_ceiling_events,
            ),
            (
                "CPU per order / bare contract's",
                self.ceiling_contract.is_some(),
                |r| r.cpu_ratio_to_ceiling_contract,
            ),
        ];
        for (label, measured, ratio) in ratios {
            if measured {
                row(label, &|r| {
                    ratio(r).map_or("-".into(), |x| format!("{x:.1}×"))
                });
            }
        }
        print!("{}", table.render());
        let baselines = [
            ("raw lapin 4-hop pipeline, same broker", &self.raw),
            (
                "ceiling (bare lapin + redis, 4 quorum hops, 10 Redis round trips per order), same broker and Redis",
                &self.ceiling,
            ),
            (
                "ceiling with the fleet's 6 customer events per order (confirmed into a stream through a topic exchange)",
                &self.ceiling_events,
            ),
            (
                "ceiling with those events and the runtime's durability writes at every hop (the fleet's contract done bare, its HTTP calls aside)",
                &self.ceiling_contract,
            ),
        ];
        for (what, baseline) in baselines {
            if let Some(figures) = baseline {
                println!("\n{what}: {}", baseline_line(figures));
            }
        }
        for run in &self.runs {
            if !run.phases.is_empty() {
                let phases: Vec<String> = run
                    .phases
                    .iter()
                    .map(|(at, name)| format!("{at:.1}s {name}"))
                    .collect();
                println!("\nphases ({}): {}", run.policy, phases.join(", "));
            }
        }
        for run in &self.runs {
            if run.violations.is_empty() {
                println!(
                    "\n{}: invariants I1–I9 against the simulator's ledger: all hold",
                    run.policy
                );
                continue;
            }
            println!(
                "\n{}: {} invariant violations against the simulator's ledger",
                run.policy,
                run.violations.len()
            );
            for violation in run.violations.iter().take(LISTED) {
                println!("  {violation}");
            }
            if run.violations.len() > LISTED {
                println!(
                    "  … and {} more (--json lists every one)",
                    run.violations.len() - LISTED
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use downstream_sim::Endpoint;

    #[test]
    fn calls_are_counted_by_endpoint_and_per_order_by_api() {
        let ledger = Ledger {
            reservations: vec![],
            payments: vec![],
            shipments: vec![],
            calls: BTreeMap::from([
                (Endpoint::InventoryReserve, 3),
                (Endpoint::InventoryCommit, 1),
                (Endpoint::PaymentCharge, 1),
                (Endpoint::PaymentStatus, 1),
                (Endpoint::ShippingCreate, 0),
            ]),
        };
        let (calls, per_order) = calls(&ledger, 2);
        assert_eq!(calls.get("inventory.reserve"), Some(&3));
        assert_eq!(per_order["inventory"], 2.0);
        assert_eq!(per_order["payment"], 1.0);
        assert_eq!(per_order["shipping"], 0.0);
    }
}
