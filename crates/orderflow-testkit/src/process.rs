//! One child process of a fleet: how to start it again, and its stdout and
//! stderr in a log file that survives restarts (each start appends).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How each process logs; `ORDERFLOW_E2E_RUST_LOG` overrides it.
fn rust_log() -> String {
    std::env::var("ORDERFLOW_E2E_RUST_LOG").unwrap_or_else(|_| "info".into())
}

/// Written to the log before each start.
const START_MARKER: &str = "===== orderflow-testkit: start #";

/// A child process that can be killed, signalled and started again with
/// the same program, arguments and environment.
#[derive(Debug)]
pub struct Proc {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Proc {
    /// Starts `program`; its output goes to `log`.
    pub fn spawn(
        label: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> Proc {
        let mut proc = Proc {
            label: label.to_owned(),
            program: program.to_path_buf(),
            args: args.to_vec(),
            env: env.to_vec(),
            log: log.to_path_buf(),
            child: None,
            starts: 0,
        };
        proc.start();
        proc
    }

    /// `payment-worker#1`, `downstream-sim`.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Times started, the first start included.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    fn start(&mut self) {
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let _ = writeln!(
            log,
            "{START_MARKER}{} of {} at {} =====",
            self.starts,
            self.label,
            jiff::Timestamp::now()
        );
        let stdout = log.try_clone().expect("a log file handle clones");
        let mut command = Command::new(&self.program);
        // Nothing inherited from the caller's own `ORDERFLOW_*` settings.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ORDERFLOW_") {
                command.env_remove(name);
            }
        }
        command
            .args(&self.args)
            .env("RUST_LOG", rust_log())
            .env_remove("FAILPOINTS")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(log));
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({}): {e}",
                self.label,
                self.program.display()
            )
        });
        self.child = Some(child);
    }

    /// Whether the process is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none() && self.child.is_some()
    }

    /// How it exited, if it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// `kill -9`: no shutdown, nothing flushed, unacked deliveries return to
    /// their queues.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `within` for the exit. `None`: still
    /// running (it is left running).
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let pid = self.pid()?;
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(sent, "could not send SIGTERM to {} ({pid})", self.label);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exit_status() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it if it runs, then starts it again on the same log.
    pub fn restart(&mut self) {
        self.kill9();
        self.start();
    }

    /// Starts it again if it is not running (after [`Proc::terminate`]).
    pub fn ensure_running(&mut self) {
        if !self.is_running() {
            self.child = None;
            self.start();
        }
    }

    /// Its log since it was last started.
    pub fn log_since_start(&self) -> String {
        let text = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        match text.rfind(START_MARKER) {
            Some(at) => text[at..].to_owned(),
            None => text,
        }
    }

    /// The address it said it listens on since it was last started
    /// (`... listening on 127.0.0.1:40123`).
    pub fn listen_address(&self) -> Option<String> {
        self.log_since_start()
            .lines()
            .filter_map(|l| l.split("listening on ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .next_back()
            .map(str::to_owned)
    }

    /// The last `lines` lines of its log.
    pub fn tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The last `lines` lines of a file (all of it if shorter).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Opens (creating) a file for writing, with a readable panic.
pub fn create_file(path: &Path) -> File {
    File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
}
