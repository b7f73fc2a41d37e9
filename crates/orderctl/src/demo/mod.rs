//! `orderctl demo`: the whole fleet on one machine. Starts the simulator,
//! the three stage workers and the reconciler as child processes on the
//! local RabbitMQ and Redis in a fresh namespace, publishes a demo load
//! under a fault mix that exercises every row of the stage table, shows
//! orders by state while they move, and ends with a summary and the
//! invariant check against the simulator's ledger. Ctrl-C stops every child
//! cleanly.

mod children;
mod load;
mod report;

use children::Children;
use clap::Args;
use orderflow_broker::{Connection, Publisher, TopologySpec};
use orderflow_core::Stage;
use orderflow_core::message::OrderId;
use orderflow_core::state::Disposition;
use orderflow_store::{OrderRecord, Store};
use orderflow_verify::{AuditStep, Expectations, OrderView, Parked, Snapshot};
use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const POLICY: &str = include_str!("../../demo/policy.toml");
const PROFILE: &str = include_str!("../../demo/profile.toml");

const WORKERS: [&str; 4] = [
    "inventory-worker",
    "payment-worker",
    "shipping-worker",
    "reconciler",
];

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Orders to place.
    #[arg(long, default_value_t = 2000)]
    pub orders: usize,
    /// Seed of the generated orders (and so of the whole demo load).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Orders per second at most (default: as fast as the broker confirms).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Give up waiting for every order to settle after this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The namespace to run in [default: a fresh `demo-<time>`].
    #[arg(long)]
    pub namespace: Option<String>,
    /// Keep the namespace's queues and keys afterwards, for `orderctl status`
    /// and `orderctl exceptions` to look at.
    #[arg(long)]
    pub keep: bool,
    /// Where the worker and simulator binaries are [default: beside orderctl].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    #[arg(
        long,
        env = "ORDERFLOW_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    #[arg(
        long,
        env = "ORDERFLOW_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DemoArgs) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(demo(args)) {
        Ok(code) => code,
        Err(problem) => {
            eprintln!("demo: {problem}");
            ExitCode::from(1)
        }
    }
}

/// What the demo runs on.
struct Ground {
    namespace: String,
    store: Store,
    broker: Connection,
    spec: TopologySpec,
}

async fn demo(args: DemoArgs) -> Result<ExitCode, String> {
    let ground = ground(&args).await?;
    let dir = std::env::temp_dir().join(format!("orderflow-{}", ground.namespace));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .ok_or("cannot tell where orderctl is; pass --bin-dir")?,
    };
    let mut children = Children::new(bin_dir, dir.clone());
    let sim = start_fleet(&mut children, &args, &ground, &dir).await?;
    eprintln!(
        "fleet up in namespace {} (simulator {sim}); logs in {}",
        ground.namespace,
        dir.display()
    );

    let load = load::demo_load(args.orders, args.seed);
    let started = Instant::now();
    let publisher = Publisher::connect(&args.amqp_url, "orderctl-demo")
        .await
        .map_err(|e| orderflow_broker::chain(&e).to_string())?;
    let exchange = ground.spec.names().orders_exchange();
    let (sent, failed) = crate::publish::send(&publisher, &exchange, load.orders, args.rate).await;
    let (_, failed_late) = crate::publish::send(&publisher, &exchange, load.follow_up, None).await;
    publisher.close().await;
    if let Some(problem) = failed.or(failed_late) {
        return Err(format!("publishing stopped after {sent} orders: {problem}"));
    }
    eprintln!(
        "{sent} orders published, with cancels, a replacement, duplicates and malformed messages"
    );

    let settled = watch(&ground, load.placed.len(), args.timeout).await?;
    let wall = started.elapsed();
    let records = records(&ground.store, &load.placed).await?;
    let exceptions = exceptions(&ground).await?;
    let snapshot = snapshot(&ground, &sim, &load.placed, &records, &mut children).await?;
    let expected = Expectations {
        placed: load.placed.clone(),
        malformed: load.malformed.clone(),
        payment_idempotent: true,
        external_refunds: BTreeSet::new(),
    };
    let violations = orderflow_verify::check(&snapshot, &expected);
    children.stop(Duration::from_secs(10));

    let summary = report::Summary::new(&ground.namespace, &records, exceptions, wall, &violations);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("the summary serializes")
        );
    } else {
        summary.print();
    }
    if args.keep {
        eprintln!(
            "namespace {} kept: ORDERFLOW_NAMESPACE={} orderctl status",
            ground.namespace, ground.namespace
        );
    } else {
        let _ = orderflow_broker::topology::delete(&ground.broker, &ground.spec).await;
        let _ = ground.store.purge_namespace().await;
    }
    Ok(match settled {
        Settled::All if violations.is_empty() => ExitCode::SUCCESS,
        Settled::All => ExitCode::from(1),
        Settled::TimedOut => {
            eprintln!("not every order settled within {:?}", args.timeout);
            ExitCode::from(1)
        }
        Settled::Interrupted => {
            eprintln!("interrupted: the fleet was stopped");
            ExitCode::from(130)
        }
    })
}

async fn ground(args: &DemoArgs) -> Result<Ground, String> {
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| format!("demo-{}", jiff::Timestamp::now().as_second()));
    let policy =
        orderflow_core::policy::parse(POLICY, "the demo policy").map_err(|e| e.to_string())?;
    let store = Store::connect(&args.redis_url, &namespace)
        .await
        .map_err(|e| {
            format!(
                "cannot reach Redis at {}: {e}\n  start it with scripts/services.sh",
                args.redis_url
            )
        })?;
    let broker = orderflow_broker::connect(&args.amqp_url)
        .await
        .map_err(|e| {
            format!(
                "cannot reach RabbitMQ: {}\n  start it with scripts/services.sh",
                orderflow_broker::chain(&e)
            )
        })?;
    let spec = TopologySpec::from_policy(&namespace, &policy).map_err(|e| e.to_string())?;
    // Declared before any worker starts, so the load can be published at once.
    orderflow_broker::declare(&broker, &spec)
        .await
        .map_err(|e| orderflow_broker::chain(&e).to_string())?;
    Ok(Ground {
        namespace,
        store,
        broker,
        spec,
    })
}

/// Starts the simulator and the workers and waits until every worker is
/// ready; returns the simulator's base URL.
async fn start_fleet(
    children: &mut Children,
    args: &DemoArgs,
    ground: &Ground,
    dir: &Path,
) -> Result<String, String> {
    let write = |name: &str, text: &str| -> Result<String, String> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path.display().to_string())
    };
    let profile = write("profile.toml", PROFILE)?;
    let policy = write("policy.toml", POLICY)?;
    children.spawn(
        "downstream-sim",
        "downstream-sim",
        &["--listen", "127.0.0.1:0", "--profile", &profile],
        &[],
    )?;
    let sim = format!(
        "http://{}",
        children
            .listen_address("downstream-sim", Duration::from_secs(10))
            .await?
    );
    let env = [
        ("ORDERFLOW_AMQP_URL", args.amqp_url.clone()),
        ("ORDERFLOW_REDIS_URL", args.redis_url.clone()),
        ("ORDERFLOW_NAMESPACE", ground.namespace.clone()),
        ("ORDERFLOW_POLICY", policy),
        ("ORDERFLOW_INVENTORY_URL", sim.clone()),
        ("ORDERFLOW_PAYMENT_URL", sim.clone()),
        ("ORDERFLOW_SHIPPING_URL", sim.clone()),
        ("ORDERFLOW_LISTEN", "127.0.0.1:0".to_owned()),
    ];
    for worker in WORKERS {
        children.spawn(worker, worker, &[], &env)?;
    }
    let http = reqwest::Client::new();
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
    }
    Ok(sim)
}

enum Settled {
    All,
    TimedOut,
    Interrupted,
}

/// Shows orders by state until `expected` orders have settled, the time
/// is up, or Ctrl-C.
async fn watch(ground: &Ground, expected: usize, timeout: Duration) -> Result<Settled, String> {
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let mut last_printed = Instant::now() - Duration::from_secs(60);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(Settled::Interrupted),
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let counts = ground
            .store
            .count_by_state()
            .await
            .map_err(|e| e.to_string())?;
        let line = report::progress_line(started.elapsed(), &counts);
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
            if terminal {
                eprintln!();
            }
            return Ok(Settled::All);
        }
        if started.elapsed() > timeout {
            if terminal {
                eprintln!();
            }
            return Ok(Settled::TimedOut);
        }
    }
}

async fn records(store: &Store, placed: &[String]) -> Result<Vec<OrderRecord>, String> {
    let mut records = Vec::with_capacity(placed.len());
    for id in placed {
        let Some(id) = OrderId::parse(id) else {
            continue;
        };
        if let Some(record) = store.get_order(&id).await.map_err(|e| e.to_string())? {
            records.push(record);
        }
    }
    Ok(records)
}

/// Messages waiting in each exception queue, by stage and reason; read
/// without consuming them.
async fn exceptions(ground: &Ground) -> Result<BTreeMap<String, usize>, String> {
    let mut by_reason = BTreeMap::new();
    for stage in Stage::ALL {
        let queue = ground.spec.names().exception_queue(stage);
        let parked = orderflow_broker::admin::peek(&ground.broker, &queue, 10_000)
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

/// Everything the invariants are checked against, read now.
async fn snapshot(
    ground: &Ground,
    sim: &str,
    placed: &[String],
    records: &[OrderRecord],
    children: &mut Children,
) -> Result<Snapshot, String> {
    let ledger = reqwest::get(format!("{sim}/_ledger"))
        .await
        .map_err(|e| format!("the simulator's ledger: {e}"))?
        .json()
        .await
        .map_err(|e| format!("the simulator's ledger: {e}"))?;
    let by_id: BTreeMap<String, &OrderRecord> = records
        .iter()
        .map(|r| (r.order_id.to_string(), r))
        .collect();
    let mut orders = BTreeMap::new();
    let mut audits = BTreeMap::new();
    for id in placed {
        orders.insert(id.clone(), by_id.get(id).map(|r| OrderView::from(*r)));
        if let Some(order_id) = OrderId::parse(id) {
            let audit = ground
                .store
                .order_audit(&order_id)
                .await
                .map_err(|e| e.to_string())?;
            audits.insert(id.clone(), audit.iter().map(AuditStep::from).collect());
        }
    }
    let queue = ground.spec.names().exception_queue(Stage::Inventory);
    let inventory_exceptions = orderflow_broker::admin::peek(&ground.broker, &queue, 10_000)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|message| Parked {
            queue: queue.clone(),
            redelivered: message.redelivered(),
            body: message.body().to_vec(),
            meta: message.meta().clone(),
        })
        .collect();
    Ok(Snapshot {
        ledger,
        orders,
        audits,
        inventory_exceptions,
        dead_workers: children.dead(),
    })
}
