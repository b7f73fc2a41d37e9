//! Charts of the last hour, drawn from the fleet's audit stream (every
//! move and note of every order, with the rule that decided it): orders by
//! state over time, and decisions by class. Served as SVG, so the page
//! needs no chart library and no outside service.

pub mod plot;

use crate::Console;
use crate::layout::PageError;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::{SignedDuration, Timestamp};
use orderflow_core::OrderState;
use orderflow_store::AuditEntry;
use plot::Sample;
use std::collections::BTreeMap;

/// How far back the charts look.
const WINDOW: SignedDuration = SignedDuration::from_secs(3_600);
/// Points per line: one a minute.
const BUCKETS: i64 = 60;
/// Audit entries read at most per chart (a busy hour is cut short, and
/// the chart says so).
const MAX_ENTRIES: usize = 50_000;

/// What decided a move, by the class of its rule.
pub const CLASSES: [&str; 10] = [
    "success",
    "retryable",
    "unknown",
    "overload",
    "infrastructure",
    "business",
    "fulfilment",
    "cancel",
    "stuck",
    "operator",
];

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/charts/orders.svg", get(orders_chart))
        .route("/charts/decisions.svg", get(decisions_chart))
}

/// The class of an audited rule (`retryable.retry` → `retryable`,
/// `payment.rejected.release` → `business`); `None` for moves no rule
/// decided (an order's creation, a fulfilment step).
pub fn decision_class(rule: &str) -> Option<&'static str> {
    let head = rule.split('.').next().unwrap_or(rule);
    Some(match head {
        "success" | "naive" => "success",
        "retryable" => "retryable",
        "unknown" => "unknown",
        "overload" => "overload",
        "infrastructure" => "infrastructure",
        "inventory" | "payment" | "shipping" => "business",
        "fulfilment" => "fulfilment",
        "cancelled" => "cancel",
        "deadline" => "stuck",
        _ if rule.starts_with("action:") => "operator",
        _ => return None,
    })
}

/// The last hour's entries, oldest first, and whether the read stopped
/// at [`MAX_ENTRIES`].
async fn last_hour(
    console: &Console,
    now: Timestamp,
) -> Result<(Vec<AuditEntry>, bool), PageError> {
    let start = now - WINDOW;
    let since = format!("{}-0", start.as_millisecond().max(0));
    let entries = console
        .target()
        .store()
        .fleet_audit(Some(&since), MAX_ENTRIES)
        .await
        .map_err(|e| {
            PageError::new(
                StatusCode::BAD_GATEWAY,
                "Could not be done now",
                format!("cannot read the audit stream: {e}"),
            )
        })?;
    let cut = entries.len() >= MAX_ENTRIES;
    Ok((entries, cut))
}

fn minute_of(at: Timestamp, start: Timestamp) -> i64 {
    (at.duration_since(start).as_secs() / 60).clamp(0, BUCKETS - 1)
}

/// Orders by state at the end of each minute of the window: today's
/// counts, walked back through the window's moves.
pub fn orders_over_time(
    now_counts: &BTreeMap<OrderState, u64>,
    entries: &[AuditEntry],
    now: Timestamp,
) -> Vec<Sample<OrderState>> {
    let start = now - WINDOW;
    let mut counts: BTreeMap<OrderState, i64> = now_counts
        .iter()
        .map(|(state, n)| (*state, i64::try_from(*n).unwrap_or(i64::MAX)))
        .collect();
    // Moves by minute, so the walk back can undo one minute at a time.
    let mut by_minute: BTreeMap<i64, Vec<&AuditEntry>> = BTreeMap::new();
    for entry in entries
        .iter()
        .filter(|e| e.at >= start && e.from != Some(e.to))
    {
        by_minute
            .entry(minute_of(entry.at, start))
            .or_default()
            .push(entry);
    }
    let mut samples = Vec::with_capacity(BUCKETS as usize + 1);
    let snapshot = |at: i64, counts: &BTreeMap<OrderState, i64>| Sample {
        at: at as f64,
        counts: counts
            .iter()
            .map(|(state, n)| (*state, u64::try_from(*n).unwrap_or(0)))
            .collect(),
    };
    samples.push(snapshot(BUCKETS, &counts));
    for minute in (0..BUCKETS).rev() {
        for entry in by_minute.get(&minute).into_iter().flatten() {
            *counts.entry(entry.to).or_default() -= 1;
            if let Some(from) = entry.from {
                *counts.entry(from).or_default() += 1;
            }
        }
        samples.push(snapshot(minute, &counts));
    }
    samples.reverse();
    samples
}

/// Decisions per minute, by class.
pub fn decisions_over_time(entries: &[AuditEntry], now: Timestamp) -> Vec<Sample<&'static str>> {
    let start = now - WINDOW;
    let mut per_minute: Vec<BTreeMap<&'static str, u64>> = vec![BTreeMap::new(); BUCKETS as usize];
    for entry in entries.iter().filter(|e| e.at >= start) {
        let Some(class) = entry.rule.as_deref().and_then(decision_class) else {
            continue;
        };
        let minute = usize::try_from(minute_of(entry.at, start)).unwrap_or(0);
        *per_minute[minute].entry(class).or_default() += 1;
    }
    per_minute
        .into_iter()
        .enumerate()
        .map(|(minute, counts)| Sample {
            at: minute as f64 + 1.0,
            counts,
        })
        .collect()
}

fn svg(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn title(what: &str, cut: bool) -> String {
    if cut {
        format!("{what} (the first {MAX_ENTRIES} audit entries of the hour)")
    } else {
        what.to_owned()
    }
}

const AXIS: &str = "minutes, over the last hour (60 = now)";

async fn orders_chart(State(console): State<Console>) -> Result<Response, PageError> {
    let now = Timestamp::now();
    let counts = console
        .target()
        .store()
        .count_by_state()
        .await
        .map_err(|e| {
            PageError::new(
                StatusCode::BAD_GATEWAY,
                "Could not be done now",
                format!("cannot read orders by state: {e}"),
            )
        })?;
    let (entries, cut) = last_hour(&console, now).await?;
    let samples = orders_over_time(&counts, &entries, now);
    Ok(svg(plot::svg(
        &[(title("Orders by state", cut), &samples)],
        AXIS,
        &OrderState::ALL,
    )))
}

async fn decisions_chart(State(console): State<Console>) -> Result<Response, PageError> {
    let now = Timestamp::now();
    let (entries, cut) = last_hour(&console, now).await?;
    let samples = decisions_over_time(&entries, now);
    Ok(svg(plot::svg(
        &[(title("Decisions per minute, by class", cut), &samples)],
        AXIS,
        &CLASSES,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_core::message::OrderId;

    fn entry(
        at: Timestamp,
        from: Option<OrderState>,
        to: OrderState,
        rule: Option<&str>,
    ) -> AuditEntry {
        AuditEntry {
            id: "0-1".into(),
            order_id: OrderId::parse("o-1").unwrap(),
            at,
            version: 1,
            actor: "w".into(),
            from,
            to,
            event: "e".into(),
            reason: None,
            rule: rule.map(str::to_owned),
            correlation_id: "c".into(),
            policy_id: "p".into(),
        }
    }

    #[test]
    fn every_rule_of_the_decision_table_has_a_class() {
        assert_eq!(decision_class("retryable.retry"), Some("retryable"));
        assert_eq!(decision_class("unknown.query_status"), Some("unknown"));
        assert_eq!(decision_class("payment.rejected.release"), Some("business"));
        assert_eq!(decision_class("deadline.stuck.escalate"), Some("stuck"));
        assert_eq!(decision_class("action:a-1"), Some("operator"));
        assert_eq!(decision_class("test.rule"), None);
        for class in CLASSES {
            assert!(
                [
                    "success.proceed",
                    "retryable.defer",
                    "unknown.park_pending",
                    "overload.defer",
                    "infrastructure.escalate",
                    "shipping.refused.block",
                    "fulfilment.poll",
                    "cancelled.compensate",
                    "deadline.stuck.escalate",
                    "action:x"
                ]
                .iter()
                .any(|rule| decision_class(rule) == Some(class)),
                "{class} is reachable"
            );
        }
    }

    #[test]
    fn orders_by_state_are_walked_back_from_today() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let ago = |minutes: i64| now - SignedDuration::from_mins(minutes);
        // Created 30 min ago, paid 10 min ago; today it is paid.
        let entries = [
            entry(ago(30), None, OrderState::Received, None),
            entry(
                ago(10),
                Some(OrderState::Received),
                OrderState::Paid,
                Some("success.proceed"),
            ),
            entry(
                ago(5),
                Some(OrderState::Paid),
                OrderState::Paid,
                Some("retryable.defer"),
            ),
        ];
        let now_counts = BTreeMap::from([(OrderState::Paid, 1), (OrderState::Received, 0)]);
        let samples = orders_over_time(&now_counts, &entries, now);
        assert_eq!(samples.len(), 61);
        let at = |minute: usize, state| samples[minute].counts.get(&state).copied().unwrap_or(0);
        assert_eq!(
            (at(10, OrderState::Received), at(10, OrderState::Paid)),
            (0, 0),
            "before it was created"
        );
        assert_eq!(
            (at(40, OrderState::Received), at(40, OrderState::Paid)),
            (1, 0)
        );
        assert_eq!(
            (at(60, OrderState::Received), at(60, OrderState::Paid)),
            (0, 1)
        );
    }

    #[test]
    fn decisions_are_counted_by_minute_and_class() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let at = now - SignedDuration::from_secs(90);
        let entries = [
            entry(
                at,
                Some(OrderState::Reserved),
                OrderState::Reserved,
                Some("retryable.defer"),
            ),
            entry(
                at,
                Some(OrderState::Reserved),
                OrderState::Paid,
                Some("success.proceed"),
            ),
            entry(at, None, OrderState::Received, None),
        ];
        let samples = decisions_over_time(&entries, now);
        let total: u64 = samples.iter().flat_map(|s| s.counts.values()).sum();
        assert_eq!(total, 2, "the creation had no rule");
        assert_eq!(samples[58].counts.get("retryable"), Some(&1));
        assert_eq!(samples[58].counts.get("success"), Some(&1));
    }
}
