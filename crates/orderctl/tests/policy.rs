//! `orderctl policy …` as an operator runs it: the real binary, real files.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn orderctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orderctl"))
        .args(args)
        .env_remove("ORDERFLOW_POLICY")
        .output()
        .expect("orderctl runs")
}

/// A policy file of this test's own, removed when dropped.
struct PolicyFile(PathBuf);

impl PolicyFile {
    fn new(name: &str, text: &str) -> PolicyFile {
        let path =
            std::env::temp_dir().join(format!("orderctl-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write policy file");
        PolicyFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn check_passes_the_default_policy_and_prints_its_id() {
    let out = orderctl(&["policy", "check"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("valid, policy id pol-"), "{stdout}");
}

#[test]
fn check_refuses_each_contradiction_naming_the_key() {
    let cases = [
        (
            "unknown-retry",
            "[downstreams.inventory]\nidempotent = false\nstatus_query = false\n[stages.inventory.status_poll]\nlimit = 0\n",
            "stages.inventory.retry_unknown",
        ),
        (
            "lease",
            "[downstreams.payment]\nrequest_timeout = \"30s\"\n",
            "downstreams.payment.request_timeout",
        ),
        (
            "tiers-empty",
            "[stages.shipping]\ndelay_tiers = []\n",
            "stages.shipping.delay_tiers",
        ),
        (
            "tiers-order",
            "[stages.shipping]\ndelay_tiers = [\"10s\", \"5s\"]\n",
            "stages.shipping.delay_tiers",
        ),
        (
            "ambiguity",
            "[stages.payment]\nambiguity_window = \"1s\"\n",
            "stages.payment.ambiguity_window",
        ),
        (
            "delivery-limit",
            "[broker]\ndelivery_limit = 3\n",
            "broker.delivery_limit",
        ),
        (
            "retention",
            "[downstreams.payment]\nkey_retention = \"2h\"\n",
            "downstreams.payment.key_retention",
        ),
        (
            "typo",
            "[stages.payment]\nambiguity_windw = \"1h\"\n",
            "stages.payment.ambiguity_windw",
        ),
    ];
    for (name, text, key) in cases {
        let file = PolicyFile::new(name, text);
        let out = orderctl(&["policy", "check", file.path()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(file.path()),
            "{name}: names the file: {stderr}"
        );
        assert!(
            stderr.contains(&format!("  {key}: ")),
            "{name}: names {key}: {stderr}"
        );
    }
}

#[test]
fn check_refuses_a_retention_shorter_than_safety_needs_with_the_reason() {
    let file = PolicyFile::new(
        "short-retention",
        "[exceptions]\nreplay_window = \"36h\"\n[retention]\nfinished_for = \"30h\"\n",
    );
    let out = orderctl(&["policy", "check", file.path()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("  retention.finished_for: (1day 6h) is shorter than exceptions.replay_window (1day 12h)"),
        "names the key, the need and why: {stderr}"
    );
    assert!(stderr.contains("would look lost"), "{stderr}");
}

#[test]
fn check_lists_every_problem_as_json() {
    let file = PolicyFile::new(
        "many",
        "[broker]\ndelivery_limit = 1\n[stages.payment]\ndelay_tiers = []\n",
    );
    let out = orderctl(&["policy", "check", "--json", file.path()]);
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["valid"], false);
    let keys: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert!(
        keys.contains(&"broker.delivery_limit") && keys.contains(&"stages.payment.delay_tiers"),
        "{keys:?}"
    );
}

#[test]
fn check_of_a_missing_file_says_what_to_give() {
    let out = orderctl(&["policy", "check", "/nonexistent/policy.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("preset name: default, naive"));
}

#[test]
fn show_prints_the_effective_policy_with_defaults_filled_in() {
    let file = PolicyFile::new("show", "[stages.payment]\nambiguity_window = \"45m\"\n");
    let out = orderctl(&["policy", "show", file.path()]);
    assert_eq!(out.status.code(), Some(0));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("ambiguity_window = \"45m\""), "{shown}");
    assert!(
        shown.contains("[downstreams.shipping"),
        "defaults filled in: {shown}"
    );
}

#[test]
fn show_marks_the_naive_preset() {
    let out = orderctl(&["policy", "show", "naive"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("strategy: naive"));
}

/// `policy explain --json` → (action, reason, rule).
fn explain(args: &[&str]) -> (String, String, String) {
    let mut all = vec!["policy", "explain", "--json"];
    all.extend_from_slice(args);
    let out = orderctl(&all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let field = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        field(&v["decision"]["action"]),
        field(&v["decision"]["reason"]),
        field(&v["rule"]),
    )
}

#[test]
fn explain_gives_the_design_decision_for_every_stage_table_row() {
    let rows: &[(&[&str], &str, &str)] = &[
        // inventory
        (
            &[
                "--stage",
                "inventory",
                "--class",
                "success",
                "--certainty",
                "applied",
            ],
            "proceed",
            "",
        ),
        (
            &[
                "--stage",
                "inventory",
                "--class",
                "business_rejection",
                "--certainty",
                "not_applied",
                "--code",
                "insufficient_stock",
            ],
            "fail_fast",
            "insufficient_stock",
        ),
        (
            &[
                "--stage",
                "inventory",
                "--class",
                "timeout",
                "--certainty",
                "unknown",
            ],
            "query_status",
            "",
        ),
        (
            &[
                "--stage",
                "inventory",
                "--class",
                "timeout",
                "--certainty",
                "unknown",
                "--queried",
            ],
            "defer",
            "",
        ),
        (
            &[
                "--stage",
                "inventory",
                "--class",
                "overloaded",
                "--certainty",
                "not_applied",
            ],
            "retry_after",
            "",
        ),
        (
            &[
                "--stage",
                "inventory",
                "--class",
                "rate_limited",
                "--certainty",
                "not_applied",
                "--retry-after",
                "1s",
            ],
            "retry_after",
            "",
        ),
        (
            &[
                "--stage",
                "inventory",
                "--class",
                "overloaded",
                "--certainty",
                "not_applied",
                "--breaker-open",
            ],
            "defer",
            "",
        ),
        (
            &[
                "--stage",
                "inventory",
                "--class",
                "transient",
                "--certainty",
                "not_applied",
                "--budget-spent",
            ],
            "defer",
            "",
        ),
        (
            &[
                "--stage",
                "inventory",
                "--class",
                "success",
                "--certainty",
                "applied",
                "--cancelled",
            ],
            "compensate",
            "cancelled",
        ),
        // payment
        (
            &[
                "--stage",
                "payment",
                "--class",
                "success",
                "--certainty",
                "applied",
            ],
            "proceed",
            "",
        ),
        (
            &[
                "--stage",
                "payment",
                "--class",
                "business_rejection",
                "--certainty",
                "not_applied",
                "--code",
                "card_declined",
            ],
            "compensate",
            "card_declined",
        ),
        (
            &[
                "--stage",
                "payment",
                "--class",
                "timeout",
                "--certainty",
                "unknown",
            ],
            "query_status",
            "",
        ),
        (
            &[
                "--stage",
                "payment",
                "--class",
                "transient",
                "--certainty",
                "unknown",
                "--queried",
            ],
            "park_pending",
            "",
        ),
        (
            &[
                "--stage",
                "payment",
                "--class",
                "success",
                "--certainty",
                "unknown",
                "--code",
                "processing",
                "--queried",
            ],
            "park_pending",
            "",
        ),
        (
            &[
                "--stage",
                "payment",
                "--class",
                "timeout",
                "--certainty",
                "unknown",
                "--queried",
                "--elapsed",
                "31m",
            ],
            "escalate",
            "payment_unresolved",
        ),
        (
            &[
                "--stage",
                "payment",
                "--class",
                "business_rejection",
                "--certainty",
                "not_applied",
                "--shipment-accepted",
            ],
            "escalate",
            "payment_failed_after_shipment",
        ),
        // shipping
        (
            &[
                "--stage",
                "shipping",
                "--class",
                "success",
                "--certainty",
                "applied",
            ],
            "proceed",
            "",
        ),
        (
            &[
                "--stage",
                "shipping",
                "--class",
                "business_rejection",
                "--certainty",
                "not_applied",
                "--code",
                "unsupported_destination",
            ],
            "block",
            "unsupported_destination",
        ),
        (
            &[
                "--stage",
                "shipping",
                "--class",
                "timeout",
                "--certainty",
                "unknown",
            ],
            "query_status",
            "",
        ),
        (
            &[
                "--stage",
                "shipping",
                "--class",
                "success",
                "--certainty",
                "applied",
                "--queried",
            ],
            "proceed",
            "",
        ),
        (
            &[
                "--stage",
                "shipping",
                "--class",
                "transient",
                "--certainty",
                "not_applied",
                "--queried",
            ],
            "retry_after",
            "",
        ),
        (
            &["--stage", "shipping", "--fulfilment", "exception"],
            "escalate",
            "fulfilment_exception",
        ),
        (
            &[
                "--stage",
                "shipping",
                "--fulfilment",
                "packed",
                "--elapsed",
                "2h",
            ],
            "escalate",
            "fulfilment_stalled",
        ),
        // any stage
        (
            &[
                "--stage",
                "payment",
                "--class",
                "timeout",
                "--certainty",
                "unknown",
                "--idempotent",
                "false",
                "--status-query",
                "false",
            ],
            "escalate",
            "payment_unknown_outcome_not_retryable",
        ),
    ];
    for (args, action, reason) in rows {
        let (got_action, got_reason, rule) = explain(args);
        assert_eq!(
            (got_action.as_str(), got_reason.as_str()),
            (*action, *reason),
            "{args:?} (rule {rule})"
        );
        assert!(!rule.is_empty(), "{args:?} names its rule");
    }
}

#[test]
fn explain_refuses_a_typo_with_the_valid_names() {
    let out = orderctl(&[
        "policy",
        "explain",
        "--stage",
        "payment",
        "--class",
        "timout",
        "--certainty",
        "unknown",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected one of: success, transient"));
}

#[test]
fn states_prints_the_state_diagram() {
    let out = orderctl(&["states"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("stateDiagram-v2"));
}
