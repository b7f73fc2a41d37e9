//! The four binaries as an operator runs them, against the real RabbitMQ and
//! Redis (`ORDERFLOW_TEST_AMQP_URL`, `ORDERFLOW_TEST_REDIS_URL`; defaults on
//! 127.0.0.1). Every test works in a namespace of its own and deletes its
//! queues and keys when done, passed or failed.

mod common;

use common::{amqp_url, empty_api, redis_url};
use orderflow_broker::{Meta, Publisher, TopologySpec};
use orderflow_core::{Policy, Stage};
use orderflow_store::Store;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const INVENTORY: &str = env!("CARGO_BIN_EXE_inventory-worker");
const PAYMENT: &str = env!("CARGO_BIN_EXE_payment-worker");
const SHIPPING: &str = env!("CARGO_BIN_EXE_shipping-worker");
const RECONCILER: &str = env!("CARGO_BIN_EXE_reconciler");

/// Start-up failures must come well within this.
const EXIT_WITHIN: Duration = Duration::from_secs(20);

/// A namespace of this test's own on the real services; its queues and keys
/// are deleted on drop, so a failed test cleans up too.
struct Namespace {
    name: String,
    spec: TopologySpec,
    /// Every async call of the test runs here: a broker connection lives on
    /// the runtime that opened it.
    runtime: tokio::runtime::Runtime,
    connection: orderflow_broker::Connection,
}

impl Namespace {
    /// Fails the test at once, saying which service is missing, when
    /// RabbitMQ or Redis cannot be reached: a test that could not reach
    /// them proves nothing.
    fn new() -> Namespace {
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a test runtime");
        let connection = runtime.block_on(async {
            let connection = orderflow_testkit::services::connect_broker().await;
            // Only that Redis answers: the workers write, the test does not.
            orderflow_testkit::services::connect_store(&name).await;
            connection
        });
        let spec = TopologySpec::from_policy(&name, &Policy::default_policy())
            .expect("a t-<uuid> namespace is valid");
        Namespace {
            name,
            spec,
            runtime,
            connection,
        }
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// A binary set up for this namespace, with nothing inherited from the
    /// caller's `ORDERFLOW_*` settings.
    fn command(&self, binary: &str) -> Command {
        let mut command = Command::new(binary);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ORDERFLOW_") {
                command.env_remove(name);
            }
        }
        command
            .env("ORDERFLOW_NAMESPACE", &self.name)
            .env("ORDERFLOW_AMQP_URL", amqp_url())
            .env("ORDERFLOW_REDIS_URL", redis_url())
            .env("ORDERFLOW_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    fn declare(&self) {
        self.block_on(orderflow_broker::declare(&self.connection, &self.spec))
            .expect("declare the namespace's topology");
    }

    fn publish(&self, stage: Stage, body: &[u8]) {
        self.block_on(async {
            let publisher = Publisher::connect(&amqp_url(), &format!("{}.test", self.name)).await?;
            let queue = self.spec.names().work_queue(stage);
            let published = publisher
                .to_queue(&queue, body.to_vec(), Meta::default())
                .await;
            publisher.close().await;
            published
        })
        .expect("publish a delivery");
    }

    fn depth(&self, queue: &str) -> u32 {
        self.block_on(orderflow_broker::admin::queue_depth(
            &self.connection,
            queue,
        ))
        .unwrap_or_else(|e| panic!("depth of {queue}: {}", orderflow_broker::chain(&e)))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.block_on(async {
            let _ = orderflow_broker::topology::delete(&self.connection, &self.spec).await;
            if let Ok(store) = Store::connect(&redis_url(), &self.name).await {
                let _ = store.purge_namespace().await;
            }
        });
    }
}

/// Runs a process that is expected to stop by itself: its status and stderr.
fn run_to_exit(mut command: Command) -> (ExitStatus, String) {
    let mut child = command.spawn().expect("the binary starts");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = wait_for_exit(&mut child, EXIT_WITHIN);
    (status, reader.join().expect("stderr reader"))
}

fn wait_for_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_startup_failure(status: ExitStatus, stderr: &str, expected: &[&str]) {
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    for part in expected {
        assert!(
            stderr.contains(part),
            "`{part}` missing from stderr:\n{stderr}"
        );
    }
}

/// A policy file of this test's own, removed on drop.
struct PolicyFile(PathBuf);

impl PolicyFile {
    fn new(text: &str) -> PolicyFile {
        let path =
            std::env::temp_dir().join(format!("orderflow-worker-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).expect("write a policy file");
        PolicyFile(path)
    }
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn bad_settings_exit_2_naming_the_setting() {
    let ns = Namespace::new();
    let taken = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let taken = taken.local_addr().unwrap().to_string();
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "ORDERFLOW_AMQP_URL",
            "amqp//guest:secret@localhost",
            &["ORDERFLOW_AMQP_URL", "is not a URL", "amqp://"],
        ),
        (
            "ORDERFLOW_AMQP_URL",
            "http://guest:secret@localhost:5672/",
            &["ORDERFLOW_AMQP_URL", "scheme `http`", "guest:***@"],
        ),
        (
            "ORDERFLOW_REDIS_URL",
            "localhost:6379",
            &["ORDERFLOW_REDIS_URL", "redis://host:6379"],
        ),
        (
            "ORDERFLOW_INVENTORY_URL",
            "inventory.internal",
            &["ORDERFLOW_INVENTORY_URL", "inventory.internal"],
        ),
        (
            "ORDERFLOW_NAMESPACE",
            "has space",
            &["ORDERFLOW_NAMESPACE", "has space"],
        ),
        ("ORDERFLOW_LISTEN", &taken, &["ORDERFLOW_LISTEN", &taken]),
    ];
    for (name, value, expected) in cases {
        let mut command = ns.command(PAYMENT);
        command.env(name, value);
        let (status, stderr) = run_to_exit(command);
        assert_startup_failure(status, &stderr, expected);
        assert!(
            !stderr.contains("secret"),
            "{name}: password shown:\n{stderr}"
        );
    }
}

#[test]
fn an_invalid_policy_file_exits_2_with_every_problem() {
    let ns = Namespace::new();
    let file = PolicyFile::new(
        "[broker]\ndelivery_limit = 0\n[stages.paymnt]\nambiguity_window = \"1m\"\n",
    );
    let mut command = ns.command(SHIPPING);
    command.env("ORDERFLOW_POLICY", &file.0);
    let (status, stderr) = run_to_exit(command);
    assert_startup_failure(status, &stderr, &["ORDERFLOW_POLICY", "stages.paymnt"]);

    let file =
        PolicyFile::new("[broker]\ndelivery_limit = 0\n[stages.payment]\ndelay_tiers = []\n");
    let mut command = ns.command(SHIPPING);
    command.env("ORDERFLOW_POLICY", &file.0);
    let (status, stderr) = run_to_exit(command);
    assert_startup_failure(
        status,
        &stderr,
        &[
            "ORDERFLOW_POLICY",
            "invalid policy (2 problems)",
            "broker.delivery_limit",
            "stages.payment.delay_tiers",
        ],
    );
}

#[test]
fn unreachable_redis_exits_2_before_anything_is_consumed() {
    let ns = Namespace::new();
    // A delivery waiting in the queue must still be there afterwards.
    ns.declare();
    ns.publish(Stage::Payment, b"{}");

    let mut command = ns.command(PAYMENT);
    command.env("ORDERFLOW_REDIS_URL", "redis://127.0.0.1:1");
    let started = Instant::now();
    let (status, stderr) = run_to_exit(command);
    assert_startup_failure(
        status,
        &stderr,
        &[
            "ORDERFLOW_REDIS_URL",
            "cannot reach Redis at redis://127.0.0.1:1",
        ],
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let queue = ns.spec.names().work_queue(Stage::Payment);
    assert_eq!(ns.depth(&queue), 1, "the waiting delivery was taken");
}

#[test]
fn a_redis_that_answers_late_at_start_up_is_waited_for() {
    let ns = Namespace::new();
    let dir = std::env::temp_dir().join(format!("orderflow-worker-{}", uuid::Uuid::new_v4()));
    let redis = orderflow_testkit::redis::PrivateRedis::start(&dir);
    // A Redis too busy to answer for 2 s (as under load, or starting):
    // one short timeout must not end the worker's start-up.
    let paused = Command::new("redis-cli")
        .args([
            "-p",
            &redis.port().to_string(),
            "client",
            "pause",
            "2000",
            "all",
        ])
        .output()
        .expect("redis-cli runs");
    assert_eq!(String::from_utf8_lossy(&paused.stdout).trim(), "OK");
    let mut command = ns.command(RECONCILER);
    command.env("ORDERFLOW_REDIS_URL", redis.url());
    let mut running = Running::start(command);
    let ready = wait_until_ready(running.address());
    assert!(ready.contains("\"ready\":true"), "{ready}");
    drop(running);
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreachable_rabbitmq_exits_2_naming_the_url_without_its_password() {
    let ns = Namespace::new();
    for binary in [INVENTORY, RECONCILER] {
        let mut command = ns.command(binary);
        command.env("ORDERFLOW_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f");
        let (status, stderr) = run_to_exit(command);
        assert_startup_failure(
            status,
            &stderr,
            &[
                "ORDERFLOW_AMQP_URL",
                "cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:1/%2f",
            ],
        );
    }
}

#[test]
fn a_topology_conflict_exits_2_naming_the_queue() {
    let ns = Namespace::new();
    // The namespace's queues exist with the default delivery limit...
    ns.declare();
    let default_limit = Policy::default_policy().broker.delivery_limit;
    // ...and the worker comes with another one.
    let file = PolicyFile::new(&format!(
        "[broker]\ndelivery_limit = {}\n",
        default_limit + 1
    ));
    let mut command = ns.command(PAYMENT);
    command.env("ORDERFLOW_POLICY", &file.0);
    let (status, stderr) = run_to_exit(command);
    assert_startup_failure(
        status,
        &stderr,
        &[
            "ORDERFLOW_POLICY",
            "x-delivery-limit",
            &format!("{}.", ns.name),
        ],
    );
}

#[test]
fn help_lists_every_setting_with_its_variable() {
    let common = [
        "ORDERFLOW_AMQP_URL",
        "ORDERFLOW_REDIS_URL",
        "ORDERFLOW_NAMESPACE",
        "ORDERFLOW_POLICY",
        "ORDERFLOW_LISTEN",
        "ORDERFLOW_ACTOR",
        "ORDERFLOW_LOG",
        "RUST_LOG",
    ];
    // The reconciler consumes no queue and calls no API.
    let stage_only = [
        "ORDERFLOW_INVENTORY_URL",
        "ORDERFLOW_PAYMENT_URL",
        "ORDERFLOW_SHIPPING_URL",
        "ORDERFLOW_CONCURRENCY",
        "ORDERFLOW_PREFETCH",
        "ORDERFLOW_SHUTDOWN_GRACE",
    ];
    for (binary, port, stage) in [
        (INVENTORY, "9101", true),
        (PAYMENT, "9102", true),
        (SHIPPING, "9103", true),
        (RECONCILER, "9104", false),
    ] {
        let out = Command::new(binary).arg("--help").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{binary}");
        let help = String::from_utf8_lossy(&out.stdout);
        for name in common {
            assert!(help.contains(name), "{binary}: {name} missing:\n{help}");
        }
        for name in stage_only {
            assert_eq!(help.contains(name), stage, "{binary}: {name}");
        }
        assert!(
            help.contains(&format!("127.0.0.1:{port}")),
            "{binary}:\n{help}"
        );
    }
}

/// A process started in the background, its stderr read line by line.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut command: Command) -> Running {
        let mut child = command.spawn().expect("the binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The address from the `listening on ADDR` log line.
    fn address(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            self.seen.push(line.clone());
            if let Some((_, rest)) = line.split_once("listening on ") {
                let address = rest.split_whitespace().next().unwrap_or_default();
                return address
                    .parse()
                    .unwrap_or_else(|e| panic!("`{address}` is not an address: {e}"));
            }
        }
        panic!(
            "no `listening on` line; stderr so far:\n{}",
            self.seen.join("\n")
        );
    }

    fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM failed");
        wait_for_exit(&mut self.child, Duration::from_secs(10))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 GET: (status, body).
fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {address}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in: {head}"));
    (status, body.to_owned())
}

fn wait_until_ready(address: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(address, "/readyz");
        if status == 200 {
            return body;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "never ready: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `binary`, checks its endpoints, then drains it with SIGTERM.
/// The downstream APIs answer as the contract says.
fn serves_and_drains(ns: &Namespace, binary: &str, role: &str) -> (SocketAddr, Running) {
    let mut command = ns.command(binary);
    let api = empty_api();
    for name in ["INVENTORY", "PAYMENT", "SHIPPING"] {
        command.env(format!("ORDERFLOW_{name}_URL"), &api);
    }
    let mut running = Running::start(command);
    let address = running.address();

    let (status, body) = get(address, "/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let ready = wait_until_ready(address);
    let policy_id = Policy::default_policy().id();
    assert!(ready.contains("\"ready\":true"), "{ready}");
    assert!(ready.contains(policy_id.as_str()), "{ready}");

    let (status, metrics) = get(address, "/metrics");
    assert_eq!(status, 200);
    let info = metrics
        .lines()
        .find(|line| line.starts_with("orderflow_policy_info{"))
        .unwrap_or_else(|| panic!("no orderflow_policy_info:\n{metrics}"));
    assert!(
        info.contains(&format!("policy_id=\"{policy_id}\""))
            && info.contains(&format!("role=\"{role}\""))
            && info.ends_with(" 1"),
        "{info}"
    );
    assert!(
        metrics.contains(&format!("orderflow_up{{role=\"{role}\"}} 1")),
        "{metrics}"
    );
    (address, running)
}

#[test]
fn a_payment_worker_serves_health_and_metrics_consumes_and_drains_on_sigterm() {
    let ns = Namespace::new();
    let (address, mut running) = serves_and_drains(&ns, PAYMENT, "payment");

    // It consumes its own queue: a malformed delivery goes to the
    // exceptions, and is counted.
    let exceptions = ns.spec.names().exception_queue(Stage::Payment);
    ns.publish(Stage::Payment, b"not json");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ns.depth(&exceptions) == 0 {
        assert!(Instant::now() < deadline, "nothing reached {exceptions}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, metrics) = get(address, "/metrics");
    assert!(
        metrics.contains("orderflow_malformed_total{stage=\"payment\"} 1"),
        "{metrics}"
    );

    let started = Instant::now();
    let status = running.terminate();
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_reconciler_serves_health_and_metrics_and_drains_on_sigterm() {
    let ns = Namespace::new();
    let (_, mut running) = serves_and_drains(&ns, RECONCILER, "reconciler");
    // It declared the namespace's queues: it publishes into them.
    let queue = ns.spec.names().exception_queue(Stage::Shipping);
    assert_eq!(ns.depth(&queue), 0);
    let status = running.terminate();
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn a_stage_worker_stays_unready_until_its_api_urls_answer_as_the_contract() {
    let ns = Namespace::new();
    let mut command = ns.command(PAYMENT);
    // Nothing answers there: it may be the API, down, or a wrong URL.
    for name in ["INVENTORY", "PAYMENT", "SHIPPING"] {
        command.env(format!("ORDERFLOW_{name}_URL"), "http://127.0.0.1:1");
    }
    let mut running = Running::start(command);
    let address = running.address();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = get(address, "/readyz");
        assert_ne!(status, 200, "ready without a checked payment API: {body}");
        if body.contains("ORDERFLOW_PAYMENT_URL") {
            break body;
        }
        assert!(Instant::now() < deadline, "no reason given: {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        body.contains("http://127.0.0.1:1/v1/payments/by-key/") && body.contains("no answer"),
        "{body}"
    );
    // And the log says the same.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running
        .seen
        .iter()
        .any(|l| l.contains("not ready: ORDERFLOW_PAYMENT_URL"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = running
            .lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no warning in the log:\n{}", running.seen.join("\n")));
        running.seen.push(line);
    }
    let status = running.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn a_password_with_url_special_characters_is_never_printed() {
    let ns = Namespace::new();
    // `/`, `?`, `#` and `@` end or split a URL's authority: a masking that
    // looks for the first of them shows the rest of the password.
    for password in ["se/cret-pw", "se?cret-pw", "se#cret-pw", "se@cret/pw"] {
        for (setting, url) in [
            (
                "ORDERFLOW_AMQP_URL",
                format!("amqp://guest:{password}@127.0.0.1:1/%2f"),
            ),
            (
                "ORDERFLOW_REDIS_URL",
                format!("redis://:{password}@127.0.0.1:1"),
            ),
            (
                "ORDERFLOW_REDIS_URL",
                format!("redis://user:{}@127.0.0.1:1", password.replace('/', "%2F")),
            ),
        ] {
            let mut command = ns.command(PAYMENT);
            command.env(setting, &url);
            let (status, stderr) = run_to_exit(command);
            assert_eq!(status.code(), Some(2), "{url}: stderr:\n{stderr}");
            assert!(stderr.contains(setting), "{url}: stderr:\n{stderr}");
            for secret in ["cret-pw", "cret/pw", "cret%2Fpw"] {
                assert!(
                    !stderr.contains(secret),
                    "{setting}={url}: the password is in stderr:\n{stderr}"
                );
            }
        }
    }
}
