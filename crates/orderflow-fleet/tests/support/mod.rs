//! Running `orderflow-fleet bench` and `orderflow-fleet chaos` from a test:
//! the fleet's binaries are taken from the test executable's target
//! directory (`target/<profile>/deps/<test>` → `target/<profile>`), where
//! `cargo test -p orderflow-fleet` does not build them; a missing one fails the test with the
//! `cargo build` that makes it. RabbitMQ and Redis are the local ones
//! (`ORDERFLOW_TEST_AMQP_URL`, `ORDERFLOW_TEST_REDIS_URL` override them).

use std::path::PathBuf;
use std::process::{Command, Output};

const FLEET: [&str; 5] = [
    "inventory-worker",
    "payment-worker",
    "shipping-worker",
    "reconciler",
    "downstream-sim",
];

/// `target/<profile>`, checked to hold every binary the fleet runs.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let deps = exe.parent().expect("the test executable is in a directory");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps/ has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    };
    let missing: Vec<&str> = FLEET
        .iter()
        .copied()
        .filter(|bin| !dir.join(bin).is_file())
        .collect();
    if !missing.is_empty() {
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => String::new(),
            Some("release") => " --release".into(),
            Some(other) => format!(" --profile {other}"),
        };
        panic!(
            "{} not found in {}; build the fleet first: cargo build{profile} --bins -p orderflow-fleet -p orderflow-worker -p downstream-sim",
            missing.join(", "),
            dir.display()
        );
    }
    dir
}

/// `orderflow-fleet ARGS --bin-dir DIR` on the test services, with nothing
/// inherited from the caller's `ORDERFLOW_*` settings.
pub fn fleet(args: &[&str]) -> Output {
    let amqp = std::env::var("ORDERFLOW_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let redis = std::env::var("ORDERFLOW_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let bin_dir = bin_dir();
    let mut command = Command::new(env!("CARGO_BIN_EXE_orderflow-fleet"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ORDERFLOW_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .args(["--amqp-url", &amqp, "--redis-url", &redis])
        .output()
        .expect("orderflow-fleet runs")
}

/// Stdout and stderr, for a failing assertion.
pub fn shown(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
