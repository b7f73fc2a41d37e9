//! Harness additions for the adversarial edge suite (docs/reliability.md): commands
//! to the fleet's private Redis, and a worker's own health endpoints.

use crate::fleet::{Fleet, WorkerKind};
use crate::redis::which;
use std::time::Duration;

impl Fleet {
    /// Runs `redis-cli ARGS…` against the fleet's private Redis (e.g.
    /// `CONFIG SET maxmemory 1`); returns what it printed. Panics when the
    /// fleet runs on the shared Redis, which a test must never reconfigure.
    pub fn private_redis_cli(&self, args: &[&str]) -> String {
        redis_cli(self.private_redis_port(), args)
    }

    /// The port of the fleet's private Redis; panics without one.
    pub fn private_redis_port(&self) -> u16 {
        self.redis
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|redis| redis.port())
            .expect("this needs FleetOptions::private_redis")
    }

    /// The body of `GET path` (`/readyz`, `/metrics`) on the `index`th
    /// worker of `kind`, whatever its status; `None` while it does not
    /// listen or answer.
    pub async fn worker_http(&self, kind: WorkerKind, index: usize, path: &str) -> Option<String> {
        let address = self
            .lock_workers()
            .iter()
            .filter(|w| w.kind == kind)
            .nth(index)
            .and_then(|w| w.proc.listen_address())?;
        let response = self
            .http
            .get(format!("http://{address}{path}"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        response.text().await.ok()
    }

    /// The sum of a metric's samples (every label set) in the worker's
    /// `/metrics`; 0 when it has none yet.
    pub async fn worker_metric(&self, kind: WorkerKind, index: usize, name: &str) -> f64 {
        let text = self
            .worker_http(kind, index, "/metrics")
            .await
            .unwrap_or_default();
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Runs `redis-cli -p PORT ARGS…` on 127.0.0.1; returns what it printed.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let program = which("redis-cli").expect("redis-cli is installed with redis-server");
    let output = std::process::Command::new(program)
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("redis-cli {args:?}: {e}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "redis-cli {args:?}: {text}");
    text
}
