//! What the demo shows at the end: the final states, exceptions by reason,
//! the invariant check against the simulator's ledger, throughput and time
//! to a final state.

use crate::local_fleet::{self, figures::Outcome};
use orderflow_store::OrderRecord;
use orderflow_verify::Violation;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub namespace: String,
    pub orders: usize,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub exceptions: BTreeMap<String, usize>,
    pub orders_per_second: f64,
    pub violations: Vec<String>,
}

impl Summary {
    pub fn new(
        namespace: &str,
        records: &[OrderRecord],
        exceptions: BTreeMap<String, usize>,
        wall: Duration,
        violations: &[Violation],
    ) -> Summary {
        Summary {
            namespace: namespace.to_owned(),
            orders: records.len(),
            outcome: Outcome::new(records),
            exceptions,
            orders_per_second: records.len() as f64 / wall.as_secs_f64().max(0.001),
            violations: violations.iter().map(ToString::to_string).collect(),
        }
    }

    pub fn print(&self) {
        println!(
            "\n== orderflow demo: {} orders in namespace {} ==",
            self.orders, self.namespace
        );
        println!("\nfinal states");
        for (state, n) in &self.outcome.by_state {
            println!("  {state:<20} {n:>6}");
        }
        if !self.outcome.reasons.is_empty() {
            println!("\nwhy (orders not delivered)");
            for (reason, n) in &self.outcome.reasons {
                println!("  {reason:<50} {n:>6}");
            }
        }
        println!("\nexception queues, by stage and reason");
        if self.exceptions.is_empty() {
            println!("  (empty)");
        }
        for (reason, n) in &self.exceptions {
            println!("  {reason:<50} {n:>6}");
        }
        println!(
            "\nthroughput {:.0} orders/s · time to a final state p50 {} ms, p99 {} ms",
            self.orders_per_second, self.outcome.p50_ms, self.outcome.p99_ms
        );
        local_fleet::print_verdict(&self.violations);
    }
}
