//! Running `orderflow-fleet bench` and `orderflow-fleet chaos` from a test:
//! the fleet's binaries are the test kit's (`target/<profile>`, rebuilt
//! when older than their sources), RabbitMQ and Redis the test services.

use orderflow_testkit::binaries;
use orderflow_testkit::services::{amqp_url, redis_url};
use std::process::{Command, Output};

/// `orderflow-fleet ARGS --bin-dir DIR` on the test services, with nothing
/// inherited from the caller's `ORDERFLOW_*` settings.
pub fn fleet(args: &[&str]) -> Output {
    let (amqp, redis) = (amqp_url(), redis_url());
    let sim = binaries::path(binaries::SIM);
    let bin_dir = sim.parent().expect("a binary is in a directory");
    let mut command = Command::new(env!("CARGO_BIN_EXE_orderflow-fleet"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ORDERFLOW_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .arg("--bin-dir")
        .arg(bin_dir)
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
