//! `orderflow-fleet chaos`: a bench-like run of the fleet with things breaking
//! under it. While orders flow, a random worker is killed with SIGKILL and
//! started again every few seconds, the workers' broker connections are
//! closed twice, and Redis is killed and started again on its append-only
//! file — only a private `redis-server` this command started itself on a
//! free port (never the shared Redis). At the end every order must have
//! settled and I1–I9 must hold against the simulator's ledger (exit 1
//! otherwise).

mod broker;

use crate::local_fleet::figures::Outcome;
use crate::local_fleet::{self, Children, Ground, Launch, Settled, WORKERS};
use clap::Args;
use orderflow_verify::Expectations;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const REDIS: &str = "redis-server";

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Orders to place, spread over most of the chaos.
    #[arg(long, default_value_t = 1000)]
    pub orders: usize,
    /// How long things keep breaking.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Kill (SIGKILL) and restart a random worker this often.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub kill_every: Duration,
    /// The simulator's fault profile: a name from tests/profiles or a file
    /// (run with the profile's default policy).
    #[arg(long, default_value = "happy")]
    pub profile: String,
    /// Seed of the orders and of the choice of workers to kill.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// After the chaos, give up waiting for the orders to settle after
    /// this long.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Run on the Redis of --redis-url instead of a private redis-server;
    /// Redis is then not restarted.
    #[arg(long)]
    pub shared_redis: bool,
    /// Keep the namespace's queues, keys and logs afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub place: local_fleet::Place,
}

/// Why chaos did not come to a verdict.
enum Stop {
    Usage(String),
    Failed(String),
    Interrupted,
}

pub fn run(args: ChaosArgs) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(chaos(&args)) {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("the report serializes")
                );
            } else {
                report.print();
            }
            if report.settled && report.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(Stop::Usage(problem)) => {
            eprintln!("chaos: {problem}");
            ExitCode::from(2)
        }
        Err(Stop::Failed(problem)) => {
            eprintln!("chaos: {problem}");
            ExitCode::from(1)
        }
        Err(Stop::Interrupted) => {
            eprintln!("chaos: interrupted; the fleet was stopped");
            ExitCode::from(130)
        }
    }
}

/// One thing done to the fleet.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    /// Seconds since the first publish.
    pub at: f64,
    pub what: String,
}

#[derive(Debug, Serialize)]
pub struct ChaosReport {
    pub namespace: String,
    pub profile: String,
    pub policy_id: String,
    pub orders: usize,
    pub chaos_seconds: f64,
    /// Which Redis the run used.
    pub redis: String,
    pub actions: Vec<Action>,
    pub workers_killed: usize,
    pub connection_drops: usize,
    pub connections_closed: usize,
    pub redis_restarts: usize,
    /// Whether every order settled before the time was up.
    pub settled: bool,
    /// From the first publish until every order settled.
    pub seconds: f64,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub violations: Vec<String>,
}

/// What happens when, during the chaos.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strike {
    KillWorker,
    DropConnections,
    RestartRedis,
}

/// The chaos timeline: a worker killed every `kill_every`, the broker
/// connections dropped at 30% and 70% of the time, Redis restarted half
/// way (when it is private).
fn timeline(duration: Duration, kill_every: Duration, redis: bool) -> Vec<(Duration, Strike)> {
    let mut strikes = Vec::new();
    let mut at = kill_every;
    while at < duration && !kill_every.is_zero() {
        strikes.push((at, Strike::KillWorker));
        at += kill_every;
    }
    strikes.push((duration.mul_f64(0.3), Strike::DropConnections));
    strikes.push((duration.mul_f64(0.7), Strike::DropConnections));
    if redis {
        strikes.push((duration.mul_f64(0.5), Strike::RestartRedis));
    }
    strikes.sort_by_key(|(at, _)| *at);
    strikes
}

async fn chaos(args: &ChaosArgs) -> Result<ChaosReport, Stop> {
    if args.orders == 0 || args.duration.is_zero() {
        return Err(Stop::Usage(
            "--orders and --duration must be above 0".into(),
        ));
    }
    let profile = crate::bench::load_profile(&args.profile).map_err(Stop::Usage)?;
    let policy =
        orderflow_core::policy::parse(&profile.default_policy, &profile.default_policy_source)
            .map_err(|e| Stop::Usage(e.to_string()))?;
    let bin_dir = local_fleet::bin_dir(args.place.bin_dir.as_deref()).map_err(Stop::Failed)?;
    let namespace = format!(
        "chaos-{}-{}",
        jiff::Timestamp::now().as_second(),
        std::process::id()
    );
    let dir = local_fleet::run_dir(&namespace).map_err(Stop::Failed)?;
    let mut children = Children::new(bin_dir, dir.clone());
    let (redis_url, redis) = if args.shared_redis {
        (
            args.place.redis.url.clone(),
            "shared (--shared-redis): not restarted".to_owned(),
        )
    } else {
        let port = start_private_redis(&mut children, &dir).await?;
        (
            format!("redis://127.0.0.1:{port}"),
            format!("private redis-server on port {port}, append-only file (fsync always)"),
        )
    };
    let ground = Ground::prepare(&namespace, &policy, &args.place.amqp.url, &redis_url)
        .await
        .map_err(Stop::Failed)?;
    let result = run_chaos(
        args,
        &profile,
        &policy,
        &ground,
        &mut children,
        &dir,
        &redis_url,
    )
    .await;
    children.stop(Duration::from_secs(10));
    if args.keep {
        eprintln!("namespace {namespace} kept");
    } else {
        // A private Redis went with the children; the broker side stays.
        ground.remove().await;
    }
    let (mut report, actions) = result?;
    if !args.keep && report.settled && report.violations.is_empty() {
        local_fleet::remove_run_dir(&ground.namespace);
    }
    report.redis = redis;
    report.actions = actions;
    Ok(report)
}

async fn run_chaos(
    args: &ChaosArgs,
    profile: &crate::bench::BenchProfile,
    policy: &orderflow_core::Policy,
    ground: &Ground,
    children: &mut Children,
    dir: &Path,
    redis_url: &str,
) -> Result<(ChaosReport, Vec<Action>), Stop> {
    let namespace = &ground.namespace;
    let profile_path =
        local_fleet::write_file(dir, "profile.toml", &profile.text).map_err(Stop::Failed)?;
    let policy_path = local_fleet::write_file(dir, "policy.toml", &profile.default_policy)
        .map_err(Stop::Failed)?;
    let launched = local_fleet::launch(
        children,
        &Launch {
            namespace,
            amqp_url: &args.place.amqp.url,
            redis_url,
            policy: &policy_path.display().to_string(),
            profile: &profile_path,
        },
    )
    .await
    .map_err(Stop::Failed)?;
    eprintln!(
        "fleet up in namespace {namespace} (simulator {}); logs in {} (kept if something breaks)",
        launched.sim_url,
        dir.display()
    );

    let (orders, placed) = local_fleet::happy_load(args.orders, args.seed);
    let publisher = local_fleet::load_publisher(&args.place.amqp.url, "chaos", namespace)
        .await
        .map_err(Stop::Failed)?;
    let exchange = ground.spec.names().orders_exchange();
    // Spread over 80% of the chaos, so orders are in flight at every strike.
    let spread = args.duration.mul_f64(0.8).as_secs_f64().max(0.001);
    let rate = ((args.orders as f64 / spread).ceil() as u32).max(1);
    let started = Instant::now();
    let publishing = tokio::spawn(async move {
        let sent = orderflow_producer::send(&publisher, &exchange, orders, Some(rate)).await;
        publisher.close().await;
        sent
    });
    eprintln!(
        "publishing {} orders at {rate}/s; chaos for {:?}",
        args.orders, args.duration
    );

    let mut actions = Vec::new();
    let mut drops = Vec::new();
    let mut tally = Tally::default();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut victims: Vec<&str> = Vec::new();
    let broker_port = orderflow_broker::sockets::amqp_port(&args.place.amqp.url);
    let redis_port = redis_url
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    for (at, strike) in timeline(args.duration, args.kill_every, !args.shared_redis) {
        tokio::select! {
            _ = &mut ctrl_c => {
                publishing.abort();
                return Err(Stop::Interrupted);
            }
            () = tokio::time::sleep_until((started + at).into()) => {}
        }
        let what = match strike {
            Strike::KillWorker => {
                // Random, but every worker once before any twice.
                if victims.is_empty() {
                    victims = WORKERS.to_vec();
                    victims.shuffle(&mut rng);
                }
                let worker = victims.pop().expect("refilled above");
                tally.kills += 1;
                match children.kill_and_restart(worker) {
                    Ok((old, new)) => {
                        format!("SIGKILL {worker} (pid {old}), started again (pid {new})")
                    }
                    Err(problem) => return Err(Stop::Failed(problem)),
                }
            }
            Strike::DropConnections => {
                // In the background: rabbitmqctl takes seconds, and the
                // other strikes keep their time meanwhile.
                let pids: Vec<u32> = WORKERS.iter().filter_map(|w| children.pid(w)).collect();
                drops.push((
                    started.elapsed().as_secs_f64(),
                    tokio::task::spawn_blocking(move || {
                        let closed = broker::close_connections_of(&pids, broker_port);
                        (closed, started.elapsed().as_secs_f64())
                    }),
                ));
                continue;
            }
            Strike::RestartRedis => {
                let (old, new) = children.kill_and_restart(REDIS).map_err(Stop::Failed)?;
                let port = redis_port.ok_or_else(|| Stop::Failed("no Redis port".into()))?;
                let back = Instant::now();
                wait_for_port(port, Duration::from_secs(10))
                    .await
                    .map_err(Stop::Failed)?;
                while ground.store.ping().await.is_err() {
                    if back.elapsed() > Duration::from_secs(10) {
                        return Err(Stop::Failed(
                            "the restarted Redis did not answer within 10 s".into(),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tally.redis += 1;
                format!(
                    "SIGKILL redis-server (pid {old}), started again on its append-only file (pid {new}); answering after {:.2} s",
                    back.elapsed().as_secs_f64()
                )
            }
        };
        eprintln!("{:>6.1}s  {what}", started.elapsed().as_secs_f64());
        actions.push(Action {
            at: started.elapsed().as_secs_f64(),
            what,
        });
    }
    for (at, drop) in drops {
        let (closed, done) = drop.await.map_err(|e| Stop::Failed(e.to_string()))?;
        let closed = closed.map_err(Stop::Failed)?;
        tally.drops += 1;
        tally.closed += closed;
        let what = format!(
            "closed all {closed} broker connections of the workers (rabbitmqctl close_connection, done at {done:.1}s)"
        );
        eprintln!("{at:>6.1}s  {what}");
        actions.push(Action { at, what });
    }
    actions.sort_by(|a, b| a.at.total_cmp(&b.at));
    let chaos_seconds = started.elapsed().as_secs_f64();
    for dead in children.dead() {
        eprintln!("after the chaos: {dead}");
    }

    let (sent, failed) = publishing
        .await
        .map_err(|e| Stop::Failed(format!("publishing: {e}")))?;
    if let Some(problem) = failed {
        return Err(Stop::Failed(format!(
            "publishing stopped after {sent} orders: {problem}"
        )));
    }
    let settled = ground
        .watch(placed.len(), args.timeout, |_, _| {})
        .await
        .map_err(Stop::Failed)?;
    let seconds = started.elapsed().as_secs_f64();
    match settled {
        Settled::Interrupted => return Err(Stop::Interrupted),
        Settled::TimedOut => eprintln!(
            "not every order settled within {:?} after the chaos",
            args.timeout
        ),
        Settled::All => {}
    }
    let records = ground.records(&placed).await.map_err(Stop::Failed)?;
    let ledger = local_fleet::ledger(&launched.sim_url)
        .await
        .map_err(Stop::Failed)?;
    let expected = Expectations {
        placed: placed.clone(),
        malformed: Vec::new(),
        payment_idempotent: profile.profile.payment.capabilities.idempotent,
        external_refunds: BTreeSet::new(),
        store_lost_writes: false,
    };
    let snapshot = ground
        .snapshot(ledger, &expected, children.dead())
        .await
        .map_err(Stop::Failed)?;
    let violations = orderflow_verify::check(&snapshot, &expected);
    let report = ChaosReport {
        namespace: namespace.clone(),
        profile: profile.name.clone(),
        policy_id: policy.id().to_string(),
        orders: placed.len(),
        chaos_seconds,
        redis: String::new(),
        actions: Vec::new(),
        workers_killed: tally.kills,
        connection_drops: tally.drops,
        connections_closed: tally.closed,
        redis_restarts: tally.redis,
        settled: settled == Settled::All,
        seconds,
        outcome: Outcome::new(&records),
        violations: violations.iter().map(ToString::to_string).collect(),
    };
    Ok((report, actions))
}

#[derive(Debug, Default)]
struct Tally {
    kills: usize,
    drops: usize,
    closed: usize,
    redis: usize,
}

/// Starts `redis-server` on a free port with its append-only file (fsync
/// on every write) in `dir/redis`, as a child that can be killed and
/// started again; returns the port once it accepts connections.
async fn start_private_redis(children: &mut Children, dir: &Path) -> Result<u16, Stop> {
    let program = which(REDIS).ok_or_else(|| {
        Stop::Failed(
            "redis-server is not installed (scripts/services.sh installs it); chaos needs a private Redis to restart, or pass --shared-redis".into(),
        )
    })?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Stop::Failed(format!("no free port for Redis: {e}")))?;
    let data = dir.join("redis");
    std::fs::create_dir_all(&data)
        .map_err(|e| Stop::Failed(format!("cannot create {}: {e}", data.display())))?;
    let port_arg = port.to_string();
    let data_arg = data.display().to_string();
    children
        .spawn(
            REDIS,
            &program.display().to_string(),
            &[
                "--port",
                &port_arg,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                &data_arg,
            ],
            &[],
        )
        .map_err(Stop::Failed)?;
    wait_for_port(port, Duration::from_secs(10))
        .await
        .map_err(Stop::Failed)?;
    Ok(port)
}

async fn wait_for_port(port: u16, within: Duration) -> Result<(), String> {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if started.elapsed() > within {
            return Err(format!("nothing listens on port {port} after {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

/// The full path of `program` on `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

impl ChaosReport {
    fn print(&self) {
        println!(
            "\n== orderflow-fleet chaos: {} orders, profile {}, {:.0} s of chaos, namespace {} ==",
            self.orders, self.profile, self.chaos_seconds, self.namespace
        );
        println!("redis: {}", self.redis);
        println!("\nwhat was done");
        for action in &self.actions {
            println!("  {:>6.1}s  {}", action.at, action.what);
        }
        println!(
            "  = {} workers killed and restarted, broker connections dropped {} ({} connections), Redis restarted {}",
            self.workers_killed,
            times(self.connection_drops),
            self.connections_closed,
            times(self.redis_restarts)
        );
        println!("\nfinal states: {}", self.outcome.states_line());
        for (reason, n) in &self.outcome.reasons {
            println!("  {reason:<50} {n:>6}");
        }
        let settled = if self.settled {
            "every order settled"
        } else {
            "NOT every order settled"
        };
        println!(
            "{settled} {:.1} s after the first publish; time to a final state p50 {} ms, p99 {} ms",
            self.seconds, self.outcome.p50_ms, self.outcome.p99_ms
        );
        local_fleet::print_verdict(&self.violations);
    }
}

/// `once`, `twice`, `3 times`.
fn times(n: usize) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_kills_regularly_drops_connections_twice_and_restarts_redis_once() {
        let strikes = timeline(Duration::from_secs(15), Duration::from_secs(3), true);
        let count = |s: Strike| strikes.iter().filter(|(_, x)| *x == s).count();
        assert_eq!(count(Strike::KillWorker), 4);
        assert_eq!(count(Strike::DropConnections), 2);
        assert_eq!(count(Strike::RestartRedis), 1);
        assert!(strikes.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(strikes.iter().all(|(at, _)| *at < Duration::from_secs(15)));
        let shared = timeline(Duration::from_secs(15), Duration::from_secs(3), false);
        assert!(!shared.iter().any(|(_, s)| *s == Strike::RestartRedis));
    }
}
