//! What a run of the fleet comes to, read from the orders' records: counts
//! by final state, why orders were not delivered, and the time each order
//! took to a final state; and the one-line progress shown while it runs.

use orderflow_core::OrderState;
use orderflow_core::state::Disposition;
use orderflow_store::OrderRecord;
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

/// Final states, reasons and time to a final state of a run's orders.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub by_state: BTreeMap<String, usize>,
    /// `state: reason` of every order not delivered (the provider's code
    /// after `:` left out, so reasons group).
    pub reasons: BTreeMap<String, usize>,
    pub p50_ms: u64,
    pub p99_ms: u64,
}

impl Outcome {
    pub fn new(records: &[OrderRecord]) -> Outcome {
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
        Outcome {
            by_state,
            reasons,
            p50_ms: percentile(&took, 0.5),
            p99_ms: percentile(&took, 0.99),
        }
    }

    /// `delivered 480, rejected 20`.
    pub fn states_line(&self) -> String {
        if self.by_state.is_empty() {
            return "-".into();
        }
        self.by_state
            .iter()
            .map(|(state, n)| format!("{state} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The value at quantile `q` of sorted values (0 for none).
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i]
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

    #[test]
    fn percentiles_pick_the_nearest_value() {
        let values: Vec<u64> = (1..=101).collect();
        assert_eq!(percentile(&values, 0.5), 51);
        assert_eq!(percentile(&values, 0.99), 100);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
