//! A Redis of one test's own: append-only with `appendfsync always`, on a
//! free port, so the test can `kill -9` it and start it again on the same
//! files without disturbing the other tests on the shared Redis.

use crate::process::Proc;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    proc: Proc,
}

impl PrivateRedis {
    /// Starts `redis-server` with its data in `dir/redis` and its log in
    /// `dir/redis.log`; waits until it accepts connections.
    pub fn start(dir: &Path) -> PrivateRedis {
        let port = free_port();
        let data = dir.join("redis");
        std::fs::create_dir_all(&data)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", data.display()));
        let args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            &data.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let program = which("redis-server").unwrap_or_else(|| {
            panic!("redis-server is not installed (scripts/services.sh installs it); a private Redis cannot start")
        });
        let proc = Proc::spawn("redis-server", &program, &args, &[], &dir.join("redis.log"));
        let redis = PrivateRedis {
            port,
            dir: data,
            proc,
        };
        redis.wait_ready();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// `kill -9`, then starts again on the same port and append-only file.
    pub fn crash_and_restart(&mut self) {
        self.proc.kill9();
        self.proc.restart();
        self.wait_ready();
    }

    /// Copies the append-only files as they are now: what a replica that
    /// lags, or a host that loses its last second of writes, comes back
    /// with. [`PrivateRedis::restore`] starts Redis on the copy.
    pub fn snapshot(&self) -> RedisSnapshot {
        let copy = self
            .dir
            .with_file_name(format!("redis-snapshot-{}", uuid::Uuid::new_v4().simple()));
        copy_dir(&self.dir, &copy);
        RedisSnapshot { dir: copy }
    }

    /// `kill -9`, then starts again on `snapshot` instead of its own files:
    /// every write acknowledged since the snapshot is gone.
    pub fn restore(&mut self, snapshot: &RedisSnapshot) {
        self.proc.kill9();
        std::fs::remove_dir_all(&self.dir)
            .unwrap_or_else(|e| panic!("cannot remove {}: {e}", self.dir.display()));
        copy_dir(&snapshot.dir, &self.dir);
        self.proc.restart();
        self.wait_ready();
    }

    /// Stops it for good (dropping does the same).
    pub fn kill(&mut self) {
        self.proc.kill9();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "private redis-server did not listen on port {} within 10s:\n{}",
            self.port,
            self.proc.tail(20)
        );
    }
}

/// The append-only files of a [`PrivateRedis`] at one moment.
#[derive(Debug)]
pub struct RedisSnapshot {
    dir: PathBuf,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()));
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap_or_else(|e| {
                panic!(
                    "cannot copy {} to {}: {e}",
                    entry.path().display(),
                    target.display()
                )
            });
        }
    }
}

/// A port nothing listens on right now (the OS picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the OS hands out a free port")
}

/// The full path of `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}
