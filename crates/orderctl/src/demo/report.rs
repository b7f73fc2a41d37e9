//! What the demo shows: orders by state while it runs, and at the end the
//! final states, exceptions by reason, the invariant check against the
//! simulator's ledger, throughput and time to a final state.

use orderflow_core::OrderState;
use orderflow_core::state::Disposition;
use orderflow_store::OrderRecord;
use orderflow_verify::Violation;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One line of progress: orders in flight and settled, by state.
pub fn progress_line(elapsed: Duration, counts: &BTreeMap<OrderState, u64>) -> String {
    let part = |settled: bool| {
        let states: Vec<String> = counts
            .iter()
            .filter(|(state, n)| {
                **n > 0 && (state.disposition() != Disposition::InFlight) == settled
            })
            .map(|(state, n)| format!("{state} {n}"))
            .collect();
        let total: u64 = counts
            .iter()
            .filter(|(state, _)| (state.disposition() != Disposition::InFlight) == settled)
            .map(|(_, n)| n)
            .sum();
        (total, states.join(", "))
    };
    let (moving, moving_states) = part(false);
    let (settled, settled_states) = part(true);
    format!(
        "{:>5.1}s  in flight {moving} ({moving_states})  settled {settled} ({settled_states})",
        elapsed.as_secs_f64()
    )
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub namespace: String,
    pub orders: usize,
    pub by_state: BTreeMap<String, usize>,
    pub reasons: BTreeMap<String, usize>,
    pub exceptions: BTreeMap<String, usize>,
    pub orders_per_second: f64,
    pub p50_ms: u64,
    pub p99_ms: u64,
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
        let mut by_state = BTreeMap::new();
        let mut reasons = BTreeMap::new();
        let mut took: Vec<u64> = Vec::new();
        for record in records {
            *by_state.entry(record.state.to_string()).or_insert(0) += 1;
            if let Some(reason) = &record.reason
                && record.state != OrderState::Delivered
            {
                let key = format!(
                    "{}: {}",
                    record.state,
                    reason.split(':').next().unwrap_or(reason)
                );
                *reasons.entry(key).or_insert(0) += 1;
            }
            let ms = record.updated_at.as_millisecond() - record.created_at.as_millisecond();
            took.push(u64::try_from(ms).unwrap_or(0));
        }
        took.sort_unstable();
        let at = |q: f64| {
            if took.is_empty() {
                return 0;
            }
            let i = ((took.len() as f64 - 1.0) * q).round() as usize;
            took[i]
        };
        Summary {
            namespace: namespace.to_owned(),
            orders: records.len(),
            by_state,
            reasons,
            exceptions,
            orders_per_second: records.len() as f64 / wall.as_secs_f64().max(0.001),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            violations: violations.iter().map(ToString::to_string).collect(),
        }
    }

    pub fn print(&self) {
        println!(
            "\n== orderflow demo: {} orders in namespace {} ==",
            self.orders, self.namespace
        );
        println!("\nfinal states");
        for (state, n) in &self.by_state {
            println!("  {state:<20} {n:>6}");
        }
        if !self.reasons.is_empty() {
            println!("\nwhy (orders not delivered)");
            for (reason, n) in &self.reasons {
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
            self.orders_per_second, self.p50_ms, self.p99_ms
        );
        if self.violations.is_empty() {
            println!("invariants I1–I9 against the simulator's ledger: all hold");
        } else {
            println!("invariants I1–I9: {} VIOLATED", self.violations.len());
            for violation in &self.violations {
                println!("  {violation}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_splits_orders_in_flight_from_settled_ones() {
        let counts = BTreeMap::from([
            (OrderState::Reserved, 3),
            (OrderState::Delivered, 5),
            (OrderState::Escalated, 1),
            (OrderState::Paid, 0),
        ]);
        let line = progress_line(Duration::from_millis(1500), &counts);
        assert!(line.contains("in flight 3 (reserved 3)"), "{line}");
        assert!(
            line.contains("settled 6 (delivered 5, escalated 1)"),
            "{line}"
        );
    }
}
