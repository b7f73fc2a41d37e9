//! `orderflow-fleet chaos` end to end: a short run in which workers are killed
//! and restarted, the broker connections dropped and a private Redis
//! restarted, and which must end with every order settled and I1–I9 intact.

mod support;

use serde_json::Value;
use support::{fleet, shown};

#[test]
fn a_chaos_run_loses_no_order_and_breaks_no_invariant() {
    let out = fleet(&["chaos", "--orders", "100", "--duration", "15s", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json prints JSON ({e}):\n{}", shown(&out)));
    assert_eq!(
        report["violations"].as_array().unwrap().len(),
        0,
        "{report:#}"
    );
    assert_eq!(report["settled"], true, "{report:#}");
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));

    let settled_orders: u64 = report["by_state"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        settled_orders, 100,
        "every order has a final state: {report:#}"
    );
    assert!(
        report["workers_killed"].as_u64().unwrap() >= 4,
        "{report:#}"
    );
    assert_eq!(report["connection_drops"], 2, "{report:#}");
    assert!(
        report["connections_closed"].as_u64().unwrap() > 0,
        "the workers' connections were found and closed: {report:#}"
    );
    assert_eq!(report["redis_restarts"], 1, "{report:#}");
    assert!(
        report["redis"].as_str().unwrap().starts_with("private"),
        "{report:#}"
    );
    assert!(
        report["actions"].as_array().unwrap().len() >= 7,
        "{report:#}"
    );
}
