//! `orderflow-fleet bench` end to end: a small happy run against the real
//! RabbitMQ and Redis, with the workers and the simulator as processes.

mod support;

use serde_json::Value;
use support::{fleet, shown};

#[test]
fn a_happy_bench_reports_sane_figures_beside_the_raw_and_ceiling_baselines() {
    let plot =
        std::env::temp_dir().join(format!("orderflow-fleet-bench-{}.svg", std::process::id()));
    let plot_arg = plot.display().to_string();
    let out = fleet(&[
        "bench",
        "--orders",
        "50",
        "--profile",
        "happy",
        "--baseline",
        "raw",
        "--baseline",
        "ceiling",
        "--baseline",
        "ceiling-events",
        "--baseline",
        "ceiling-contract",
        "--plot",
        &plot_arg,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(report["profile"], "happy");
    assert_eq!(report["orders"], 50);
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "one policy, one run");
    let run = &runs[0];
    assert_eq!(run["policy"], "default");
    assert!(run["policy_id"].as_str().unwrap().starts_with("pol-"));
    assert_eq!(run["settled"], true, "{run:#}");
    assert_eq!(run["by_state"]["delivered"], 50, "{run:#}");
    assert_eq!(run["violations"].as_array().unwrap().len(), 0, "{run:#}");

    let per_second = run["orders_per_second"].as_f64().unwrap();
    let seconds = run["seconds"].as_f64().unwrap();
    assert!(per_second > 0.0 && seconds > 0.0, "{run:#}");
    assert!((per_second * seconds - 50.0).abs() < 0.5, "{run:#}");
    let (p50, p99) = (
        run["p50_ms"].as_u64().unwrap(),
        run["p99_ms"].as_u64().unwrap(),
    );
    assert!(p50 > 0 && p50 <= p99, "{run:#}");
    assert!(p99 < 30_000, "{run:#}");

    // No faults: one reservation, charge and shipment request per order.
    for endpoint in ["inventory.reserve", "payment.charge", "shipping.create"] {
        assert_eq!(run["calls"][endpoint], 50, "{endpoint}: {run:#}");
    }
    for api in ["inventory", "payment", "shipping"] {
        let per_order = run["calls_per_order"][api].as_f64().unwrap();
        assert!((1.0..10.0).contains(&per_order), "{api}: {run:#}");
    }
    assert_eq!(run["retries_refused"], 0, "{run:#}");
    assert!(run["cpu_seconds_per_1000"]["workers"].as_f64().unwrap() > 0.0);
    assert_eq!(run["worker_peak_rss_mib"].as_object().unwrap().len(), 4);

    let raw = &report["raw"];
    assert_eq!(raw["orders"], 50, "{report:#}");
    let raw_per_second = raw["orders_per_second"].as_f64().unwrap();
    assert!(raw_per_second > 0.0, "{raw:#}");
    let ratio = run["ratio_to_raw"].as_f64().unwrap();
    assert!((ratio - per_second / raw_per_second).abs() < 1e-9);

    // Every ceiling completed every order (one with events only if every
    // event was confirmed into its stream, one with records only if every
    // hop's compare-and-set found the state it expected), and the fleet's
    // CPU per order is divided by each.
    let fleet_total = run["cpu_seconds_per_1000"]["total"].as_f64().unwrap();
    for (key, name, ratio) in [
        ("ceiling", "ceiling", "cpu_ratio_to_ceiling"),
        (
            "ceiling_events",
            "ceiling-events",
            "cpu_ratio_to_ceiling_events",
        ),
        (
            "ceiling_contract",
            "ceiling-contract",
            "cpu_ratio_to_ceiling_contract",
        ),
    ] {
        let ceiling = &report[key];
        assert_eq!(ceiling["orders"], 50, "{report:#}");
        assert_eq!(ceiling["name"], name, "{report:#}");
        let ceiling_cpu = &ceiling["cpu_per_1000"];
        let ceiling_total: f64 = ["worker", "rabbitmq", "redis", "driver"]
            .iter()
            .map(|process| ceiling_cpu[process].as_f64().unwrap())
            .sum();
        assert!(ceiling_total > 0.0, "{ceiling:#}");
        let cpu_ratio = run[ratio].as_f64().unwrap();
        assert!(
            (cpu_ratio - fleet_total / ceiling_total).abs() < 1e-9,
            "{report:#}"
        );
    }

    let svg = std::fs::read_to_string(&plot).expect("--plot wrote the SVG");
    let _ = std::fs::remove_file(&plot);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains(">delivered</text>"), "{svg}");
}

#[test]
fn an_unknown_profile_is_bad_usage() {
    let out = fleet(&["bench", "--orders", "5", "--profile", "no-such-profile"]);
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("happy, flaky, ambiguous"), "{stderr}");
}
