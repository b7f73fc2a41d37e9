//! The processes of a local fleet (the simulator, the workers, a private
//! Redis), each logging to a file of the run's directory, restartable with
//! the same program, arguments and environment, and stopped with SIGTERM
//! (then SIGKILL after a grace period).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start one process again.
struct Process {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Child,
}

pub struct Children {
    dir: PathBuf,
    bin_dir: PathBuf,
    running: Vec<Process>,
}

impl Children {
    pub fn new(bin_dir: PathBuf, dir: PathBuf) -> Children {
        Children {
            dir,
            bin_dir,
            running: Vec::new(),
        }
    }

    /// Starts `program` (a binary of the bin dir, or a path) with `args`
    /// and `env`; its output goes to `<dir>/<label>.log`.
    pub fn spawn(
        &mut self,
        label: &str,
        program: &str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Result<(), String> {
        let path = if program.contains('/') {
            PathBuf::from(program)
        } else {
            self.bin_dir.join(program)
        };
        if !path.exists() {
            return Err(format!(
                "{} not found; build the fleet first: cargo build --release --bins",
                path.display()
            ));
        }
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let child = self.start(label, &path, &args, &env)?;
        self.running.push(Process {
            label: label.to_owned(),
            program: path,
            args,
            env,
            child,
        });
        Ok(())
    }

    fn start(
        &self,
        label: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<Child, String> {
        // Appended to: a restarted process keeps its earlier output.
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(label))
            .map_err(|e| format!("cannot open the log of {label}: {e}"))?;
        let _ = writeln!(
            log,
            "===== orderflow-fleet: starting {label} at {} =====",
            jiff::Timestamp::now()
        );
        Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))
    }

    pub fn log_path(&self, label: &str) -> PathBuf {
        self.dir.join(format!("{label}.log"))
    }

    /// The process id of a running child.
    pub fn pid(&self, label: &str) -> Option<u32> {
        self.running
            .iter()
            .find(|p| p.label == label)
            .map(|p| p.child.id())
    }

    /// `kill -9`, then the same program started again; returns the old and
    /// the new process id.
    pub fn kill_and_restart(&mut self, label: &str) -> Result<(u32, u32), String> {
        let index = self
            .running
            .iter()
            .position(|p| p.label == label)
            .ok_or_else(|| format!("there is no process {label}"))?;
        let old = self.running[index].child.id();
        let _ = self.running[index].child.kill();
        let _ = self.running[index].child.wait();
        let process = &self.running[index];
        let child = self.start(label, &process.program, &process.args, &process.env)?;
        let new = child.id();
        self.running[index].child = child;
        Ok((old, new))
    }

    /// The address a child last logged as `listening on ADDR`, waiting up
    /// to `within` for it; an exited child is reported with its log's tail.
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
            .filter_map(|p| match p.child.try_wait() {
                Ok(Some(status)) => Some(format!("{} exited ({status})", p.label)),
                _ => None,
            })
            .collect()
    }

    /// SIGTERM to every child (workers drain), then SIGKILL to any still
    /// running after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        for process in &self.running {
            // No signal crate: `kill` is on every machine the fleet runs on.
            let _ = Command::new("kill")
                .args(["-TERM", &process.child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + grace;
        for process in &mut self.running {
            while Instant::now() < deadline && matches!(process.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
        self.running.clear();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The last `listening on ADDR` of a log: a restarted process logs a new
/// address after its earlier one.
fn listening_on(log: &str) -> Option<String> {
    log.lines().rev().find_map(|line| {
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

    #[test]
    fn a_restarted_process_is_found_at_its_new_address() {
        let log = "x listening on 127.0.0.1:1000\n===== orderflow-fleet: starting\ny listening on 127.0.0.1:2000\n";
        assert_eq!(listening_on(log).as_deref(), Some("127.0.0.1:2000"));
    }
}
