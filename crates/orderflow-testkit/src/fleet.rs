//! A fleet of one namespace: the simulator, the worker processes, the
//! queues and the Redis keys, and everything a test does to them besides
//! publishing and reading (kill, restart, SIGTERM, dropping broker
//! connections, restarting Redis, changing the simulator's faults).

use crate::binaries;
use crate::process::{Proc, create_file};
use crate::redis::{PrivateRedis, RedisSnapshot};
use crate::{amqp_url, fixtures, redis_url};
use downstream_sim::Profile;
use orderflow_broker::rabbitmqctl::{self, ClientConnection};
use orderflow_broker::sockets::{amqp_port, client_ports};
use orderflow_broker::{Connection, Publisher, TopologySpec};
use orderflow_core::Policy;
use orderflow_store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The four kinds of worker process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkerKind {
    Inventory,
    Payment,
    Shipping,
    Reconciler,
}

impl WorkerKind {
    pub const ALL: [WorkerKind; 4] = [
        WorkerKind::Inventory,
        WorkerKind::Payment,
        WorkerKind::Shipping,
        WorkerKind::Reconciler,
    ];

    pub fn binary(self) -> &'static str {
        match self {
            WorkerKind::Inventory => "inventory-worker",
            WorkerKind::Payment => "payment-worker",
            WorkerKind::Shipping => "shipping-worker",
            WorkerKind::Reconciler => "reconciler",
        }
    }
}

/// How to start a fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Names the policy in messages (the fixture's name).
    pub policy_name: String,
    /// The policy file's text.
    pub policy: String,
    /// The simulator's profile (TOML).
    pub profile: String,
    /// Processes per kind; 1 each unless set.
    pub replicas: BTreeMap<WorkerKind, usize>,
    /// Run a Redis of the fleet's own, which [`Fleet::restart_redis`] can
    /// crash and restart.
    pub private_redis: bool,
    /// `ORDERFLOW_CONCURRENCY` of every worker.
    pub concurrency: usize,
    /// `ORDERFLOW_PREFETCH` of every worker.
    pub prefetch: u16,
    /// Variables set for one kind of worker on top of the fleet's own
    /// (`ORDERFLOW_PAYMENT_URL` of the payment worker, say).
    pub worker_env: Vec<(WorkerKind, String, String)>,
    /// Kinds [`Fleet::start`] and [`Fleet::wait_ready`] do not wait for:
    /// the test expects them to stay unready (a downstream off contract).
    pub unready: BTreeSet<WorkerKind>,
    /// `ORDERFLOW_SHUTDOWN_GRACE` of every stage worker (their default,
    /// 20 s, unless set).
    pub shutdown_grace: Duration,
    /// The broker of the fleet, the harness and `orderctl`: one node's URL
    /// or a cluster's list ([`crate::amqp_url`] unless set).
    pub amqp_url: String,
    /// The Redis of the fleet, the harness and `orderctl`: one node or a
    /// Redis Cluster's `redis+cluster://` seeds ([`crate::redis_url`]
    /// unless set; a private Redis takes its place).
    pub redis_url: String,
}

impl Default for FleetOptions {
    fn default() -> FleetOptions {
        FleetOptions::new()
    }
}

impl FleetOptions {
    /// The fast policy, a simulator with default settings and no faults,
    /// one process of each kind, the shared Redis.
    pub fn new() -> FleetOptions {
        FleetOptions {
            policy_name: fixtures::FAST.into(),
            policy: fixtures::policy(fixtures::FAST),
            profile: String::new(),
            replicas: WorkerKind::ALL.iter().map(|&k| (k, 1)).collect(),
            private_redis: false,
            concurrency: 16,
            prefetch: 32,
            worker_env: Vec::new(),
            unready: BTreeSet::new(),
            shutdown_grace: Duration::from_secs(20),
            amqp_url: amqp_url(),
            redis_url: redis_url(),
        }
    }

    /// The policy of `tests/fixtures/policy/<name>.toml`.
    pub fn policy_fixture(mut self, name: &str) -> FleetOptions {
        self.policy_name = name.into();
        self.policy = fixtures::policy(name);
        self
    }

    /// The simulator's profile, as TOML.
    pub fn profile(mut self, toml: &str) -> FleetOptions {
        self.profile = toml.into();
        self
    }

    /// The profile of `tests/fixtures/profiles/<name>.toml`.
    pub fn profile_fixture(mut self, name: &str) -> FleetOptions {
        self.profile = fixtures::profile(name);
        self
    }

    pub fn replicas(mut self, kind: WorkerKind, count: usize) -> FleetOptions {
        self.replicas.insert(kind, count);
        self
    }

    pub fn private_redis(mut self) -> FleetOptions {
        self.private_redis = true;
        self
    }

    /// Sets `name=value` for the workers of `kind`, over the fleet's own
    /// value (a downstream URL, say).
    pub fn worker_env(mut self, kind: WorkerKind, name: &str, value: &str) -> FleetOptions {
        self.worker_env.push((kind, name.into(), value.into()));
        self
    }

    /// The workers of `kind` are expected to stay unready: the fleet's
    /// readiness waits skip them ([`Fleet::readyz`] looks at one).
    pub fn expect_unready(mut self, kind: WorkerKind) -> FleetOptions {
        self.unready.insert(kind);
        self
    }

    /// Runs the fleet on this broker (a URL or a cluster's list of node
    /// URLs) instead of the tests' one.
    pub fn amqp_url(mut self, url: &str) -> FleetOptions {
        self.amqp_url = url.into();
        self
    }

    /// Another Redis: a node or a cluster's `redis+cluster://` seeds.
    pub fn redis_url(mut self, url: &str) -> FleetOptions {
        self.redis_url = url.into();
        self
    }

    /// How long a SIGTERM'd stage worker lets in-flight deliveries finish.
    pub fn shutdown_grace(mut self, grace: Duration) -> FleetOptions {
        self.shutdown_grace = grace;
        self
    }
}

/// One worker process.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) kind: WorkerKind,
    pub(crate) proc: Proc,
}

/// What the test published, for the invariants.
#[derive(Debug, Default)]
pub(crate) struct Tracked {
    /// Valid `order.placed/v1` messages by order id: the first body.
    pub(crate) placed: BTreeMap<String, serde_json::Value>,
    /// Bodies published that the contract refuses.
    pub(crate) malformed: Vec<Vec<u8>>,
    /// Orders the test refunded on the simulator itself.
    pub(crate) external_refunds: BTreeSet<String>,
    /// The test restarted Redis on an older copy of its files.
    pub(crate) store_lost_writes: bool,
}

/// The processes, queues and keys of one namespace. Dropping it kills the
/// processes, deletes the queues and exchanges and purges the Redis keys;
/// if the test is failing, it first prints the tail of every log.
pub struct Fleet {
    pub(crate) ns: String,
    pub(crate) dir: PathBuf,
    pub(crate) policy: Policy,
    pub(crate) policy_path: PathBuf,
    pub(crate) profile: Profile,
    pub(crate) spec: TopologySpec,
    /// Reopened when lost (a cluster node killed under it).
    conn: tokio::sync::Mutex<Connection>,
    pub(crate) publisher: Publisher,
    pub(crate) store: Store,
    pub(crate) redis_url: String,
    pub(crate) redis: Mutex<Option<PrivateRedis>>,
    pub(crate) sim: Mutex<Proc>,
    pub(crate) sim_url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) workers: Mutex<Vec<Worker>>,
    pub(crate) tracked: Mutex<Tracked>,
    pub(crate) events: tokio::sync::Mutex<Vec<crate::Event>>,
    options: FleetOptions,
}

impl Fleet {
    /// Starts a fleet in a fresh namespace `e2e-<uuid>`: declares its
    /// topology, starts the simulator with the options' profile and the
    /// workers with the options' policy. Panics with a clear message when
    /// RabbitMQ or Redis cannot be reached or a file is invalid.
    pub async fn start(options: FleetOptions) -> Fleet {
        let ns = format!("e2e-{}", uuid::Uuid::new_v4().simple());
        let policy = orderflow_core::policy::parse(&options.policy, &options.policy_name)
            .unwrap_or_else(|e| panic!("policy `{}` is invalid:\n{e}", options.policy_name));
        let profile = Profile::from_toml(&options.profile).unwrap_or_else(|e| {
            panic!(
                "the simulator profile is invalid:\n{e}\n---\n{}",
                options.profile
            )
        });
        let dir = std::env::temp_dir().join("orderflow-e2e").join(&ns);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let policy_path = dir.join("policy.toml");
        write(&policy_path, &options.policy);
        let profile_path = dir.join("profile.toml");
        write(&profile_path, &options.profile);

        // Redis and the simulator first: nothing is declared on the broker
        // until everything a clean-up needs is in hand.
        let redis = options.private_redis.then(|| PrivateRedis::start(&dir));
        let redis_url = redis
            .as_ref()
            .map_or_else(|| options.redis_url.clone(), PrivateRedis::url);
        let store = Store::connect(&redis_url, &ns).await.unwrap_or_else(|e| {
            panic!(
                "cannot reach Redis at {redis_url}: {e}\nthe end-to-end tests need it: redis-server --daemonize yes (or set ORDERFLOW_TEST_REDIS_URL)"
            )
        });

        let sim_args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--profile".into(),
            profile_path.display().to_string(),
        ];
        let sim_log = dir.join("downstream-sim.log");
        let mut sim = Proc::spawn(
            binaries::SIM,
            &binaries::path(binaries::SIM),
            &sim_args,
            &[],
            &sim_log,
        );
        let sim_url = format!("http://{}", wait_for_listen_line(&mut sim));
        let amqp = options.amqp_url.clone();
        let conn = orderflow_broker::connect_named(&amqp, &format!("e2e-harness.{ns}.admin"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach RabbitMQ at {}: {}\nthe end-to-end tests need it: rabbitmq-server -detached (or set ORDERFLOW_TEST_AMQP_URL)",
                    orderflow_broker::without_password(&amqp),
                    orderflow_broker::chain(&e)
                )
            });
        let publisher = Publisher::connect(&amqp, &format!("e2e-harness.{ns}.publisher"))
            .await
            .unwrap_or_else(|e| panic!("publisher: {}", orderflow_broker::chain(&e)));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");

        // The last step that can fail before the fleet exists (and its drop
        // deletes what was declared).
        let spec = TopologySpec::from_policy(&ns, &policy).expect("e2e namespaces are valid");
        orderflow_broker::declare(&conn, &spec)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "declaring the topology of {ns}: {}",
                    orderflow_broker::chain(&e)
                )
            });

        let fleet = Fleet {
            ns,
            dir,
            policy,
            policy_path,
            profile,
            spec,
            conn: tokio::sync::Mutex::new(conn),
            publisher,
            store,
            redis_url,
            redis: Mutex::new(redis),
            sim: Mutex::new(sim),
            sim_url,
            http,
            workers: Mutex::new(Vec::new()),
            tracked: Mutex::new(Tracked::default()),
            events: tokio::sync::Mutex::new(Vec::new()),
            options,
        };
        fleet.check_sim().await;
        for kind in WorkerKind::ALL {
            for _ in 0..fleet.options.replicas.get(&kind).copied().unwrap_or(1) {
                fleet.add_worker(kind);
            }
        }
        fleet.wait_ready(Duration::from_secs(30)).await;
        fleet
    }

    /// The namespace: the prefix of every queue, exchange and key.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// Where the logs, the policy and the profile are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn policy_path(&self) -> &Path {
        &self.policy_path
    }

    /// The profile the simulator started with (or was last given).
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn spec(&self) -> &TopologySpec {
        &self.spec
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The admin connection (for `orderflow_broker::admin`), opened again
    /// if it was lost.
    pub async fn broker(&self) -> tokio::sync::MutexGuard<'_, Connection> {
        let mut conn = self.conn.lock().await;
        if !conn.status().connected() {
            let name = format!("e2e-harness.{}.admin", self.ns);
            *conn = orderflow_broker::connect_named(&self.options.amqp_url, &name)
                .await
                .unwrap_or_else(|e| panic!("reconnecting: {}", orderflow_broker::chain(&e)));
        }
        conn
    }

    /// The broker URL the fleet runs on.
    pub fn amqp_url(&self) -> &str {
        &self.options.amqp_url
    }

    /// The simulator's base URL (all three APIs).
    pub fn sim_url(&self) -> &str {
        &self.sim_url
    }

    /// Starts one more process of `kind`; returns its index among its kind.
    pub fn add_worker(&self, kind: WorkerKind) -> usize {
        let mut workers = self.lock_workers();
        let index = workers.iter().filter(|w| w.kind == kind).count();
        let label = format!("{}#{index}", kind.binary());
        let log = self.dir.join(format!("{label}.log"));
        let env = self.worker_env(kind);
        let proc = Proc::spawn(&label, &binaries::path(kind.binary()), &[], &env, &log);
        workers.push(Worker { kind, proc });
        index
    }

    fn worker_env(&self, kind: WorkerKind) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("ORDERFLOW_AMQP_URL", self.options.amqp_url.clone()),
            ("ORDERFLOW_REDIS_URL", self.redis_url.clone()),
            ("ORDERFLOW_NAMESPACE", self.ns.clone()),
            ("ORDERFLOW_POLICY", self.policy_path.display().to_string()),
            ("ORDERFLOW_INVENTORY_URL", self.sim_url.clone()),
            ("ORDERFLOW_PAYMENT_URL", self.sim_url.clone()),
            ("ORDERFLOW_SHIPPING_URL", self.sim_url.clone()),
            ("ORDERFLOW_LISTEN", "127.0.0.1:0".into()),
            (
                "ORDERFLOW_CONCURRENCY",
                self.options.concurrency.to_string(),
            ),
            ("ORDERFLOW_PREFETCH", self.options.prefetch.to_string()),
            (
                "ORDERFLOW_SHUTDOWN_GRACE",
                format!("{}ms", self.options.shutdown_grace.as_millis()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (_, name, value) in self.options.worker_env.iter().filter(|(k, ..)| *k == kind) {
            env.retain(|(n, _)| n != name);
            env.push((name.clone(), value.clone()));
        }
        env
    }

    /// What one worker's `/readyz` answers now: status and body; `None`
    /// while it has not said where it listens or does not answer.
    pub async fn readyz(&self, kind: WorkerKind, index: usize) -> Option<(u16, String)> {
        let address = self.with_worker(kind, index, |p| p.listen_address())?;
        let response = self
            .http
            .get(format!("http://{address}/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }

    /// Waits until one worker answers `/readyz` with 200 (one the fleet
    /// was told to expect unready, say, once its downstream is right).
    pub async fn wait_worker_ready(&self, kind: WorkerKind, index: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.readyz(kind, index).await;
            if matches!(answer, Some((200, _))) {
                return;
            }
            if let Some(status) = self.with_worker(kind, index, Proc::exit_status) {
                panic!(
                    "{}#{index} exited ({status})\n{}",
                    kind.binary(),
                    self.log_tails(20)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}#{index} not ready within {timeout:?}: {answer:?}\n{}",
                kind.binary(),
                self.log_tails(20)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Status queries the stage workers made for a key that cannot exist,
    /// to check at start that each API URL answers as the contract says:
    /// one per API and start, while the API answers. A test counting the
    /// status queries made for orders (`Ledger::calls_to`) leaves these out.
    pub fn contract_checks(&self) -> u64 {
        self.lock_workers()
            .iter()
            .filter(|w| w.kind != WorkerKind::Reconciler)
            .map(|w| u64::from(w.proc.starts()))
            .sum()
    }

    /// One worker's log since it was last started.
    pub fn worker_log(&self, kind: WorkerKind, index: usize) -> String {
        self.with_worker(kind, index, |p| p.log_since_start())
    }

    /// Waits until every running worker answers `/readyz` with 200 (its
    /// start-up checks passed and Redis answers). A worker that exits
    /// meanwhile was refused its configuration (exit code 2) or could not
    /// connect: the panic says which, with its log.
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = Vec::new();
            let mut addresses = Vec::new();
            for worker in self.lock_workers().iter_mut() {
                if worker.proc.pid().is_none() || self.options.unready.contains(&worker.kind) {
                    continue; // stopped by the test, or expected to stay unready
                }
                if let Some(status) = worker.proc.exit_status() {
                    panic!(
                        "{} exited ({status}); its log:\n{}",
                        worker.proc.label(),
                        worker.proc.tail(40)
                    );
                }
                match worker.proc.listen_address() {
                    Some(address) => addresses.push((worker.proc.label().to_owned(), address)),
                    None => waiting.push(worker.proc.label().to_owned()),
                }
            }
            for (label, address) in addresses {
                let ready = self
                    .http
                    .get(format!("http://{address}/readyz"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ready {
                    waiting.push(label);
                }
            }
            if waiting.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "not ready within {timeout:?}: {}\n{}",
                    waiting.join(", "),
                    self.log_tails(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn lock_workers(&self) -> MutexGuard<'_, Vec<Worker>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_worker<T>(&self, kind: WorkerKind, index: usize, f: impl FnOnce(&mut Proc) -> T) -> T {
        let mut workers = self.lock_workers();
        let worker = workers
            .iter_mut()
            .filter(|w| w.kind == kind)
            .nth(index)
            .unwrap_or_else(|| panic!("there is no {}#{index}", kind.binary()));
        f(&mut worker.proc)
    }

    /// The longest a SIGTERM'd stage worker of this fleet may take to exit:
    /// its shutdown grace plus the worker's bounded closing steps.
    pub fn drain_bound(&self) -> Duration {
        orderflow_worker::drain_bound(self.options.shutdown_grace)
    }

    /// Labels of the worker processes (`payment-worker#1`), in start order.
    pub fn worker_labels(&self) -> Vec<String> {
        self.lock_workers()
            .iter()
            .map(|w| w.proc.label().to_owned())
            .collect()
    }

    /// How many processes of `kind` there are (running or not).
    pub fn replicas(&self, kind: WorkerKind) -> usize {
        self.lock_workers()
            .iter()
            .filter(|w| w.kind == kind)
            .count()
    }

    /// `kill -9` one worker; it stays down until restarted.
    pub fn kill_worker(&self, kind: WorkerKind, index: usize) {
        self.with_worker(kind, index, Proc::kill9);
    }

    /// `kill -9` one worker if it runs, then starts it again.
    pub fn restart_worker(&self, kind: WorkerKind, index: usize) {
        self.with_worker(kind, index, Proc::restart);
    }

    /// Starts a worker that was stopped (by SIGTERM or kill).
    pub fn start_worker(&self, kind: WorkerKind, index: usize) {
        self.with_worker(kind, index, Proc::ensure_running);
    }

    /// SIGTERM one worker and wait up to `within` for it to drain and exit.
    /// `None`: it was still running when the time was up.
    pub fn terminate_worker(
        &self,
        kind: WorkerKind,
        index: usize,
        within: Duration,
    ) -> Option<ExitStatus> {
        self.with_worker(kind, index, |p| p.terminate(within))
    }

    /// `kill -9` a worker chosen at random and start it again; returns its
    /// label.
    pub fn kill_and_restart_random_worker(&self) -> String {
        use rand::RngExt;
        let mut workers = self.lock_workers();
        let index = rand::rng().random_range(0..workers.len());
        let proc = &mut workers[index].proc;
        proc.restart();
        proc.label().to_owned()
    }

    /// Labels of worker processes that are not running, with how they
    /// exited.
    pub fn dead_workers(&self) -> Vec<String> {
        self.lock_workers()
            .iter_mut()
            .filter_map(|w| {
                let status = w.proc.exit_status();
                let running = w.proc.is_running();
                (!running).then(|| match status {
                    Some(status) => format!("{} ({status})", w.proc.label()),
                    None => format!("{} (stopped by the test)", w.proc.label()),
                })
            })
            .collect()
    }

    /// Closes every broker connection of this fleet's worker processes
    /// (found by their client ports, or by a connection name naming the
    /// namespace) with `rabbitmqctl close_connection`; other tests'
    /// connections and this harness's own are left alone. Returns how many
    /// were closed.
    pub async fn close_broker_connections(&self) -> usize {
        let pids: Vec<u32> = self
            .lock_workers()
            .iter()
            .filter_map(|w| w.proc.pid())
            .collect();
        let ns = self.ns.clone();
        let broker_port = amqp_port(&self.options.amqp_url);
        tokio::task::spawn_blocking(move || {
            let ports = client_ports(&pids, broker_port);
            let mine: Vec<ClientConnection> = rabbitmqctl::list_connections()
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .filter(|c| {
                    ports.contains(&c.peer_port)
                        || (c.name.contains(&ns) && !c.name.starts_with("e2e-harness."))
                })
                .collect();
            rabbitmqctl::close_connections(&mine, "orderflow-e2e: connection loss drill")
        })
        .await
        .expect("rabbitmqctl ran")
    }

    /// `kill -9` the fleet's private Redis and start it again on its
    /// append-only file; waits until the store answers again. Panics if the
    /// fleet was started without [`FleetOptions::private_redis`].
    pub async fn restart_redis(&self) {
        {
            let mut redis = self.redis.lock().unwrap_or_else(|e| e.into_inner());
            redis
                .as_mut()
                .expect("restart_redis needs FleetOptions::private_redis()")
                .crash_and_restart();
        }
        self.wait_store().await;
    }

    async fn wait_store(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.store.ping().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the restarted Redis did not answer within 10s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `orderctl ARGS --namespace NS` as the operator `alice`, on this
    /// fleet's broker, store, policy and simulator.
    pub fn orderctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(binaries::path(binaries::CTL))
            .args(args)
            .args(["--namespace", &self.ns])
            .env("ORDERFLOW_ACTOR", "alice")
            .env("ORDERFLOW_POLICY", &self.policy_path)
            .env("ORDERFLOW_AMQP_URL", &self.options.amqp_url)
            .env("ORDERFLOW_REDIS_URL", &self.redis_url)
            .env("ORDERFLOW_INVENTORY_URL", &self.sim_url)
            .env("ORDERFLOW_PAYMENT_URL", &self.sim_url)
            .env("ORDERFLOW_SHIPPING_URL", &self.sim_url)
            .output()
            .expect("orderctl runs")
    }

    /// The fleet's private Redis as it is now (see [`Fleet::restore_redis`]).
    pub fn snapshot_redis(&self) -> RedisSnapshot {
        let redis = self.redis.lock().unwrap_or_else(|e| e.into_inner());
        redis
            .as_ref()
            .expect("snapshot_redis needs FleetOptions::private_redis()")
            .snapshot()
    }

    /// `kill -9` the fleet's private Redis and start it on `snapshot`: the
    /// writes it acknowledged since are lost, as when an asynchronous
    /// replica is promoted or a host crashes under `appendfsync everysec`.
    /// Waits until the store answers again.
    pub async fn restore_redis(&self, snapshot: &RedisSnapshot) {
        {
            let mut redis = self.redis.lock().unwrap_or_else(|e| e.into_inner());
            redis
                .as_mut()
                .expect("restore_redis needs FleetOptions::private_redis()")
                .restore(snapshot);
        }
        self.tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .store_lost_writes = true;
        self.wait_store().await;
    }

    /// Replaces the simulator's profile (`PUT /_faults`): faults and
    /// per-API settings as a whole; the ledger and stock levels stay.
    pub async fn set_profile(&mut self, toml: &str) {
        let profile = Profile::from_toml(toml)
            .unwrap_or_else(|e| panic!("the new simulator profile is invalid:\n{e}"));
        let body = serde_json::to_value(&profile).expect("a profile serializes");
        let response = self
            .http
            .put(format!("{}/_faults", self.sim_url))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT /_faults: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "PUT /_faults: {status} {text}");
        self.profile = profile;
    }

    async fn check_sim(&self) {
        let url = format!("{}/healthz", self.sim_url);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.http.get(&url).send().await {
                Ok(r) if r.status().is_success() => return,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => panic!("the simulator does not answer {url}: {other:?}"),
            }
        }
    }

    /// The tail of every process's log, for a failing test.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        let mut section = |label: &str, tail: String| {
            out.push_str(&format!(
                "----- {label} (last {lines} lines) -----\n{tail}\n"
            ));
        };
        for worker in self.lock_workers().iter() {
            section(worker.proc.label(), worker.proc.tail(lines));
        }
        let sim = self.sim.lock().unwrap_or_else(|e| e.into_inner());
        section(sim.label(), sim.tail(lines));
        out
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        if failing {
            eprintln!(
                "\n===== orderflow-e2e: fleet {} failed; logs in {} =====\n{}",
                self.ns,
                self.dir.display(),
                self.log_tails(40)
            );
        }
        for worker in self.lock_workers().iter_mut() {
            worker.proc.kill9();
        }
        self.sim.lock().unwrap_or_else(|e| e.into_inner()).kill9();
        let private = self.redis.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (spec, ns) = (self.spec.clone(), self.ns.clone());
        let amqp = self.options.amqp_url.clone();
        let redis_url = private.is_none().then(|| self.redis_url.clone());
        // The test's runtime may be unwinding or single-threaded: clean up
        // on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the clean-up");
            runtime.block_on(async {
                if let Ok(conn) =
                    orderflow_broker::connect_named(&amqp, &format!("e2e-harness.{ns}.cleanup"))
                        .await
                {
                    let _ = orderflow_broker::topology::delete(&conn, &spec).await;
                    orderflow_broker::close(&conn, "clean-up done").await;
                }
                if let Some(url) = redis_url
                    && let Ok(store) = Store::connect(&url, &ns).await
                {
                    let _ = store.purge_namespace().await;
                }
            });
        });
        let _ = cleanup.join();
        drop(private);
        if !failing && std::env::var_os("ORDERFLOW_E2E_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn write(path: &Path, text: &str) {
    let mut file = create_file(path);
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Waits for `downstream-sim listening on ADDR` in the simulator's log.
fn wait_for_listen_line(sim: &mut Proc) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(address) = sim.listen_address() {
            return address;
        }
        if let Some(status) = sim.exit_status() {
            panic!(
                "downstream-sim exited at start ({status}):\n{}",
                sim.tail(30)
            );
        }
        assert!(
            Instant::now() < deadline,
            "downstream-sim did not say where it listens within 20s:\n{}",
            sim.tail(30)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
