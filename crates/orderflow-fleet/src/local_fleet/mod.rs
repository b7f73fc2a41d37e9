//! A fleet on this machine, as `orderflow-fleet demo`, `bench` and `chaos` run it:
//! a fresh namespace on the local RabbitMQ and Redis ([`Ground`]), the
//! simulator and the four workers as child processes ([`launch`]), orders
//! by state while they move ([`Ground::watch`]), and at the end everything
//! the invariants are checked against ([`Ground::snapshot`]).

mod children;
pub mod figures;

pub use children::Children;

use downstream_sim::Ledger;
use orderflow_broker::{Connection, TopologySpec};
use orderflow_core::message::OrderId;
use orderflow_core::state::Disposition;
use orderflow_core::{OrderState, Policy, Stage};
use orderflow_store::{OrderRecord, Store};
use orderflow_verify::{Expectations, Namespace, Snapshot};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a local fleet's binaries are and the RabbitMQ and Redis it runs
/// on: what `demo`, `bench` and `chaos` all take.
#[derive(Debug, Clone, clap::Args)]
pub struct Place {
    /// Where the worker and simulator binaries are [default: beside orderflow-fleet].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    #[command(flatten)]
    pub amqp: orderflow_settings::Amqp,
    #[command(flatten)]
    pub redis: orderflow_settings::Redis,
}

/// The worker processes of a fleet, one of each.
pub const WORKERS: [&str; 4] = [
    "inventory-worker",
    "payment-worker",
    "shipping-worker",
    "reconciler",
];

/// How long the store may stay unreachable while orders are watched (a
/// Redis restart takes well under a second).
const STORE_OUTAGE_LIMIT: Duration = Duration::from_secs(30);

/// A namespace on the local RabbitMQ and Redis, its topology declared.
pub struct Ground {
    pub namespace: String,
    pub store: Store,
    pub broker: Connection,
    pub spec: TopologySpec,
}

/// How watching the orders ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    All,
    TimedOut,
    Interrupted,
}

impl Ground {
    /// Connects to both services and declares the namespace's topology for
    /// `policy` (before any worker starts, so a load can be published at
    /// once).
    pub async fn prepare(
        namespace: &str,
        policy: &Policy,
        amqp_url: &str,
        redis_url: &str,
    ) -> Result<Ground, String> {
        let store = Store::connect(redis_url, namespace).await.map_err(|e| {
            format!("cannot reach Redis at {redis_url}: {e}\n  start it with scripts/services.sh")
        })?;
        let broker = orderflow_broker::connect(amqp_url).await.map_err(|e| {
            format!(
                "cannot reach RabbitMQ: {}\n  start it with scripts/services.sh",
                orderflow_broker::chain(&e)
            )
        })?;
        let spec = TopologySpec::from_policy(namespace, policy).map_err(|e| e.to_string())?;
        orderflow_broker::declare(&broker, &spec)
            .await
            .map_err(|e| orderflow_broker::chain(&e).to_string())?;
        Ok(Ground {
            namespace: namespace.to_owned(),
            store,
            broker,
            spec,
        })
    }

    /// Deletes the namespace's queues and exchanges and its Redis keys.
    pub async fn remove(&self) {
        let _ = orderflow_broker::topology::delete(&self.broker, &self.spec).await;
        let _ = self.store.purge_namespace().await;
    }

    /// Shows orders by state until `expected` orders have settled, the time
    /// is up, or Ctrl-C; hands every reading of the counts to `sample`. A
    /// store that stops answering (a Redis restart) is waited out for a
    /// while.
    pub async fn watch(
        &self,
        expected: usize,
        timeout: Duration,
        mut sample: impl FnMut(Duration, &BTreeMap<OrderState, u64>),
    ) -> Result<Settled, String> {
        let started = Instant::now();
        let terminal = std::io::stderr().is_terminal();
        let mut last_printed = Instant::now() - Duration::from_secs(60);
        let mut last_answer = Instant::now();
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let end_line = || {
            if terminal {
                eprintln!();
            }
        };
        loop {
            tokio::select! {
                _ = &mut ctrl_c => {
                    end_line();
                    return Ok(Settled::Interrupted);
                }
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            let counts = match self.store.count_by_state().await {
                Ok(counts) => counts,
                Err(e) if last_answer.elapsed() > STORE_OUTAGE_LIMIT => {
                    end_line();
                    return Err(format!("Redis stopped answering: {e}"));
                }
                Err(_) => continue,
            };
            last_answer = Instant::now();
            sample(started.elapsed(), &counts);
            let line = figures::progress_line(started.elapsed(), &counts);
            if terminal {
                eprint!("\r\x1b[K{line}");
            } else if last_printed.elapsed() >= Duration::from_secs(5) {
                eprintln!("{line}");
                last_printed = Instant::now();
            }
            let settled: u64 = counts
                .iter()
                .filter(|(state, _)| state.disposition() != Disposition::InFlight)
                .map(|(_, n)| n)
                .sum();
            let moving = counts.values().sum::<u64>() - settled;
            if moving == 0 && settled as usize >= expected {
                end_line();
                return Ok(Settled::All);
            }
            if started.elapsed() > timeout {
                end_line();
                return Ok(Settled::TimedOut);
            }
        }
    }

    /// The records of the orders placed, as the store has them now.
    pub async fn records(&self, placed: &[String]) -> Result<Vec<OrderRecord>, String> {
        let mut records = Vec::with_capacity(placed.len());
        for id in placed {
            let Some(id) = OrderId::parse(id) else {
                continue;
            };
            if let Some(record) = self.store.get_order(&id).await.map_err(|e| e.to_string())? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Messages waiting in each exception queue, by stage and reason; read
    /// without consuming them.
    pub async fn exceptions(&self) -> Result<BTreeMap<String, usize>, String> {
        let mut by_reason = BTreeMap::new();
        for stage in Stage::ALL {
            let queue = self.spec.names().exception_queue(stage);
            let parked = orderflow_broker::admin::peek(&self.broker, &queue, 10_000)
                .await
                .map_err(|e| e.to_string())?;
            for message in parked {
                let reason = message
                    .meta()
                    .reason
                    .clone()
                    .unwrap_or_else(|| "dead-lettered".into());
                *by_reason.entry(format!("{stage}: {reason}")).or_insert(0) += 1;
            }
        }
        Ok(by_reason)
    }

    /// Everything the invariants are checked against, read now: the
    /// builder the end-to-end tests use too.
    pub async fn snapshot(
        &self,
        ledger: Ledger,
        expected: &Expectations,
        dead_workers: Vec<String>,
    ) -> Result<Snapshot, String> {
        let namespace = Namespace {
            store: &self.store,
            broker: &self.broker,
            names: self.spec.names(),
        };
        orderflow_verify::read_snapshot(&namespace, ledger, expected, dead_workers)
            .await
            .map_err(|e| e.to_string())
    }
}

/// What a fleet is started with.
pub struct Launch<'a> {
    pub namespace: &'a str,
    pub amqp_url: &'a str,
    pub redis_url: &'a str,
    /// The workers' `ORDERFLOW_POLICY`: a policy file, or a preset name.
    pub policy: &'a str,
    /// The simulator's profile file.
    pub profile: &'a Path,
}

/// A fleet that started: where the simulator and each worker listen.
pub struct Launched {
    /// The simulator's base URL (all three APIs).
    pub sim_url: String,
    /// Each worker's `/healthz`, `/readyz` and `/metrics` address.
    pub workers: BTreeMap<&'static str, String>,
}

/// Starts the simulator and the four workers and waits until every worker
/// is ready.
pub async fn launch(children: &mut Children, launch: &Launch<'_>) -> Result<Launched, String> {
    let profile = launch.profile.display().to_string();
    children.spawn(
        "downstream-sim",
        "downstream-sim",
        &["--listen", "127.0.0.1:0", "--profile", &profile],
        &[],
    )?;
    let sim_url = format!(
        "http://{}",
        children
            .listen_address("downstream-sim", Duration::from_secs(10))
            .await?
    );
    let env = [
        ("ORDERFLOW_AMQP_URL", launch.amqp_url.to_owned()),
        ("ORDERFLOW_REDIS_URL", launch.redis_url.to_owned()),
        ("ORDERFLOW_NAMESPACE", launch.namespace.to_owned()),
        ("ORDERFLOW_POLICY", launch.policy.to_owned()),
        ("ORDERFLOW_INVENTORY_URL", sim_url.clone()),
        ("ORDERFLOW_PAYMENT_URL", sim_url.clone()),
        ("ORDERFLOW_SHIPPING_URL", sim_url.clone()),
        ("ORDERFLOW_LISTEN", "127.0.0.1:0".to_owned()),
    ];
    for worker in WORKERS {
        children.spawn(worker, worker, &[], &env)?;
    }
    let http = reqwest::Client::new();
    let mut workers = BTreeMap::new();
    for worker in WORKERS {
        let address = children
            .listen_address(worker, Duration::from_secs(20))
            .await?;
        let ready = format!("http://{address}/readyz");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = http.get(&ready).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{worker} is not ready; see {}",
                    children.log_path(worker).display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        workers.insert(worker, address);
    }
    Ok(Launched { sim_url, workers })
}

/// The simulator's ledger: what really happened downstream.
pub async fn ledger(sim_url: &str) -> Result<Ledger, String> {
    reqwest::get(format!("{sim_url}/_ledger"))
        .await
        .map_err(|e| format!("the simulator's ledger: {e}"))?
        .json()
        .await
        .map_err(|e| format!("the simulator's ledger: {e}"))
}

/// Where the worker and simulator binaries are: as given, else beside
/// orderflow-fleet.
pub fn bin_dir(given: Option<&Path>) -> Result<PathBuf, String> {
    match given {
        Some(dir) => Ok(dir.to_path_buf()),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .ok_or_else(|| "cannot tell where orderflow-fleet is; pass --bin-dir".to_owned()),
    }
}

/// A fresh directory for a run's files and logs.
pub fn run_dir(namespace: &str) -> Result<PathBuf, String> {
    let dir = run_dir_path(namespace);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Removes a run's directory: for runs that found nothing to look into.
pub fn remove_run_dir(namespace: &str) {
    let _ = std::fs::remove_dir_all(run_dir_path(namespace));
}

fn run_dir_path(namespace: &str) -> PathBuf {
    std::env::temp_dir().join(format!("orderflow-{namespace}"))
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf, String> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// The load of a bench or chaos run: `count` orders that can all succeed,
/// reproducible from `seed`, and the order ids they place.
pub fn happy_load(count: usize, seed: u64) -> (Vec<orderflow_producer::Message>, Vec<String>) {
    let orders = orderflow_producer::generate(count, seed, orderflow_producer::Mix::Happy);
    let placed = orders
        .iter()
        .filter_map(|m| m.message_id.strip_prefix("placed.").map(str::to_owned))
        .collect();
    (orders, placed)
}

/// The connection a run publishes its load on, named after the command and
/// the namespace in RabbitMQ's connection list.
pub async fn load_publisher(
    amqp_url: &str,
    command: &str,
    namespace: &str,
) -> Result<orderflow_broker::Publisher, String> {
    orderflow_broker::Publisher::connect(
        amqp_url,
        &format!("orderflow-fleet-{command}.{namespace}"),
    )
    .await
    .map_err(|e| orderflow_broker::chain(&e).to_string())
}

/// The verdict on I1–I9, as demo and chaos print it.
pub fn print_verdict(violations: &[String]) {
    if violations.is_empty() {
        println!("invariants I1–I9 against the simulator's ledger: all hold");
    } else {
        println!("invariants I1–I9: {} VIOLATED", violations.len());
        for violation in violations {
            println!("  {violation}");
        }
    }
}
