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
