//! `orderflow-fleet demo`: the whole fleet on one machine. Starts the simulator,
//! the three stage workers and the reconciler as child processes on the
//! local RabbitMQ and Redis in a fresh namespace, publishes a demo load
//! under a fault mix that exercises every row of the stage table, shows
//! orders by state while they move, and ends with a summary and the
//! invariant check against the simulator's ledger. Ctrl-C stops every child
//! cleanly.

mod load;
mod report;

use crate::local_fleet::{self, Children, Ground, Launch, Settled};
use clap::Args;
use orderflow_broker::Publisher;
use orderflow_verify::Expectations;
use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const POLICY: &str = include_str!("../../demo/policy.toml");
const PROFILE: &str = include_str!("../../demo/profile.toml");

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
    #[command(flatten)]
    pub place: local_fleet::Place,
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

async fn demo(args: DemoArgs) -> Result<ExitCode, String> {
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| format!("demo-{}", jiff::Timestamp::now().as_second()));
    let policy =
        orderflow_core::policy::parse(POLICY, "the demo policy").map_err(|e| e.to_string())?;
    let ground = Ground::prepare(
        &namespace,
        &policy,
        &args.place.amqp.url,
        &args.place.redis.url,
    )
    .await?;
    let dir = local_fleet::run_dir(&namespace)?;
    let bin_dir = local_fleet::bin_dir(args.place.bin_dir.as_deref())?;
    let mut children = Children::new(bin_dir, dir.clone());
    let profile = local_fleet::write_file(&dir, "profile.toml", PROFILE)?;
    let policy_path = local_fleet::write_file(&dir, "policy.toml", POLICY)?;
    let launched = local_fleet::launch(
        &mut children,
        &Launch {
            namespace: &namespace,
            amqp_url: &args.place.amqp.url,
            redis_url: &args.place.redis.url,
            policy: &policy_path.display().to_string(),
            profile: &profile,
        },
    )
    .await?;
    eprintln!(
        "fleet up in namespace {namespace} (simulator {}); logs in {}",
        launched.sim_url,
        dir.display()
    );

    let load = load::demo_load(args.orders, args.seed);
    let started = Instant::now();
    let publisher = Publisher::connect(&args.place.amqp.url, "orderflow-fleet-demo")
        .await
        .map_err(|e| orderflow_broker::chain(&e).to_string())?;
    let exchange = ground.spec.names().orders_exchange();
    let (sent, failed) =
        orderflow_producer::send(&publisher, &exchange, load.orders, args.rate).await;
    let (_, failed_late) =
        orderflow_producer::send(&publisher, &exchange, load.follow_up, None).await;
    publisher.close().await;
    if let Some(problem) = failed.or(failed_late) {
        return Err(format!("publishing stopped after {sent} orders: {problem}"));
    }
    eprintln!(
        "{sent} orders published, with cancels, a replacement, duplicates and malformed messages"
    );

    let settled = ground
        .watch(load.placed.len(), args.timeout, |_, _| {})
        .await?;
    let wall = started.elapsed();
    let records = ground.records(&load.placed).await?;
    let exceptions = ground.exceptions().await?;
    let ledger = local_fleet::ledger(&launched.sim_url).await?;
    let expected = Expectations {
        placed: load.placed.clone(),
        malformed: load.malformed.clone(),
        payment_idempotent: true,
        external_refunds: BTreeSet::new(),
        store_lost_writes: false,
    };
    let snapshot = ground.snapshot(ledger, &expected, children.dead()).await?;
    let violations = orderflow_verify::check(&snapshot, &expected);
    children.stop(Duration::from_secs(10));

    let summary = report::Summary::new(&namespace, &records, exceptions, wall, &violations);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("the summary serializes")
        );
    } else {
        summary.print();
    }
    if args.keep {
        eprintln!("namespace {namespace} kept: ORDERFLOW_NAMESPACE={namespace} orderctl status");
    } else {
        ground.remove().await;
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
