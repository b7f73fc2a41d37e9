//! The demo's processes: the simulator and the four workers, started from
//! the directory `orderctl` itself lives in, each logging to a file, and
//! stopped with SIGTERM (then SIGKILL after a grace period).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Children {
    dir: PathBuf,
    bin_dir: PathBuf,
    running: Vec<(String, Child)>,
}

impl Children {
    pub fn new(bin_dir: PathBuf, dir: PathBuf) -> Children {
        Children {
            dir,
            bin_dir,
            running: Vec::new(),
        }
    }

    /// Starts `binary` with `args` and `env`; its output goes to
    /// `<dir>/<label>.log`.
    pub fn spawn(
        &mut self,
        label: &str,
        binary: &str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Result<(), String> {
        let path = self.bin_dir.join(binary);
        if !path.exists() {
            return Err(format!(
                "{} not found; build the fleet first: cargo build --release --bins",
                path.display()
            ));
        }
        let log = File::create(self.log_path(label))
            .map_err(|e| format!("cannot create the log of {label}: {e}"))?;
        let child = Command::new(&path)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
        self.running.push((label.to_owned(), child));
        Ok(())
    }

    pub fn log_path(&self, label: &str) -> PathBuf {
        self.dir.join(format!("{label}.log"))
    }

    /// The address a child logged as `listening on ADDR`, waiting up to
    /// `within` for it; an exited child is reported with its log's tail.
    pub async fn listen_address(
        &mut self,
        label: &str,
        within: Duration,
    ) -> Result<String, String> {
        let started = Instant::now();
        loop {
            let log = std::fs::read_to_string(self.log_path(label)).unwrap_or_default();
            if let Some(address) = listening_on(&log) {
                return Ok(address);
            }
            if let Some(dead) = self.dead().into_iter().find(|d| d.starts_with(label)) {
                return Err(format!("{dead}\n{}", tail(&self.log_path(label), 10)));
            }
            if started.elapsed() > within {
                return Err(format!("{label} did not start within {within:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Children no longer running, with their exit status.
    pub fn dead(&mut self) -> Vec<String> {
        self.running
            .iter_mut()
            .filter_map(|(label, child)| match child.try_wait() {
                Ok(Some(status)) => Some(format!("{label} exited ({status})")),
                _ => None,
            })
            .collect()
    }

    /// SIGTERM to every child (workers drain), then SIGKILL to any still
    /// running after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        for (_, child) in &self.running {
            // No signal crate: `kill` is on every machine the fleet runs on.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + grace;
        for (_, child) in &mut self.running {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.running.clear();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

fn listening_on(log: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let (_, rest) = line.split_once("listening on ")?;
        rest.split_whitespace()
            .next()
            .map(|a| a.trim_matches('"').to_owned())
    })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_address_is_read_from_a_log_line() {
        let log = "2026-11-28T05:54:21Z  INFO downstream_sim: downstream-sim listening on 127.0.0.1:40639\n";
        assert_eq!(listening_on(log).as_deref(), Some("127.0.0.1:40639"));
        assert_eq!(listening_on("starting\n"), None);
    }
}
