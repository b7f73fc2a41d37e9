//! `orderflow-fleet bench`: N orders through the fleet — the simulator with a
//! named fault profile and the four workers as separate processes, in a
//! fresh namespace per run — once per policy compared (`--policy naive`
//! adds the naive preset after the chosen one), and what each run came
//! to: throughput and time to a final state, downstream calls per order and
//! per operation, retries and deferrals, exceptions by reason, and every
//! invariant violation against the simulator's ledger. `--baseline raw`
//! measures the raw lapin 4-hop pipeline on the same broker beside it, and
//! `--baseline ceiling` the bare lapin + redis workload a stage is judged
//! by, with the fleet's CPU per order as a multiple of the ceiling's;
//! `--baseline ceiling-events` that workload with the fleet's customer
//! events added, and `--baseline ceiling-contract` with the events and the
//! runtime's durability writes, the bare cost of the fleet's contract,
//! likewise;
//! `--plot` draws orders by state over time.
//!
//! The bench reports; it does not judge: a run that completes exits 0 even
//! with violations (the naive preset is expected to make some).

mod baseline;
mod metrics;
mod profiles;
mod report;

pub use baseline::{Baseline, BaselineWorkerArgs, run_worker as run_baseline_worker};
pub use profiles::{BenchProfile, load as load_profile};

use crate::local_fleet::figures::Outcome;
use crate::local_fleet::{self, Children, Ground, Launch, Settled};
use clap::Args;
use orderflow_bench::measure::Figures;
use orderflow_console::charts::plot::{self, Sample};
use orderflow_core::OrderState;
use orderflow_verify::Expectations;
use profiles::{Phase, PolicyChoice};
use report::{BenchReport, RunReport};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Orders per run.
    #[arg(long, default_value_t = 500)]
    pub orders: usize,
    /// A fault profile: a name from tests/profiles (happy, flaky,
    /// ambiguous, outage, overload, non_idempotent) or a profile file.
    #[arg(long)]
    pub profile: String,
    /// The policy of a run: `default` (the stage-aware default on a
    /// bench's time scale: tests/profiles/policy.toml, or the profile's own
    /// NAME.policy.toml), `naive` (the naive preset) or a policy file.
    /// Repeat it to compare runs side by side; `--policy naive` alone runs
    /// `default` first.
    #[arg(long = "policy", default_value = "default")]
    pub policies: Vec<String>,
    /// Also measure a baseline on the same broker (and Redis) in the same
    /// run; repeat it for both.
    #[arg(long = "baseline", value_enum)]
    pub baselines: Vec<Baseline>,
    /// Orders per second at most [default: the profile's `rate`, else as
    /// fast as the broker confirms].
    #[arg(long)]
    pub rate: Option<u32>,
    /// Seed of the generated orders: the same seed, the same orders.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Give up waiting for a run's orders to settle after this long (the
    /// run is still reported; unsettled orders break I1).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Draw orders by state over time, one panel per run, to this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep each run's namespace (queues and keys) and logs afterwards.
    #[arg(long)]
    pub keep: bool,
    #[command(flatten)]
    pub place: local_fleet::Place,
}

/// Why a bench did not complete.
enum Stop {
    /// Bad input: a profile or policy that does not parse (exit 2).
    Usage(String),
    /// It could not run (exit 1).
    Failed(String),
    /// Ctrl-C (exit 130).
    Interrupted,
}

pub fn run(args: BenchArgs) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(bench(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Stop::Usage(problem)) => {
            eprintln!("bench: {problem}");
            ExitCode::from(2)
        }
        Err(Stop::Failed(problem)) => {
            eprintln!("bench: {problem}");
            ExitCode::from(1)
        }
        Err(Stop::Interrupted) => {
            eprintln!("bench: interrupted; the fleet was stopped");
            ExitCode::from(130)
        }
    }
}

async fn bench(args: &BenchArgs) -> Result<(), Stop> {
    if args.orders == 0 {
        return Err(Stop::Usage("--orders must be at least 1".into()));
    }
    let profile = profiles::load(&args.profile).map_err(Stop::Usage)?;
    let policies = profiles::policies(&args.policies, &profile).map_err(Stop::Usage)?;
    let bin_dir = local_fleet::bin_dir(args.place.bin_dir.as_deref()).map_err(Stop::Failed)?;

    let measured = |workload: Baseline| {
        let wanted = args.baselines.contains(&workload);
        async move {
            if !wanted {
                return Ok(None);
            }
            eprintln!("{workload:?} baseline: {} orders", args.orders);
            baseline::measure(
                workload,
                &args.place.amqp.url,
                &args.place.redis.url,
                args.orders,
            )
            .await
            .map(Some)
            .map_err(Stop::Failed)
        }
    };
    let raw = measured(Baseline::Raw).await?;
    let ceiling = measured(Baseline::Ceiling).await?;
    let ceiling_events = measured(Baseline::CeilingEvents).await?;
    let ceiling_contract = measured(Baseline::CeilingContract).await?;
    let mut runs = Vec::new();
    let mut plots = Vec::new();
    for (index, policy) in policies.iter().enumerate() {
        eprintln!(
            "run {} of {}: profile {}, policy {} ({})",
            index + 1,
            policies.len(),
            profile.name,
            policy.label,
            policy.source
        );
        let (mut run, samples) = run_once(args, &profile, policy, &bin_dir, index).await?;
        run.ratio_to_raw = raw
            .as_ref()
            .map(|raw| run.orders_per_second / raw.orders_per_second);
        let fleet_cpu = run
            .cpu_seconds_per_1000
            .get("total")
            .copied()
            .unwrap_or(0.0);
        let ratio_to = |baseline: &Figures| fleet_cpu / baseline.cpu_per_1000.total();
        run.cpu_ratio_to_ceiling = ceiling.as_ref().map(ratio_to);
        run.cpu_ratio_to_ceiling_events = ceiling_events.as_ref().map(ratio_to);
        run.cpu_ratio_to_ceiling_contract = ceiling_contract.as_ref().map(ratio_to);
        plots.push((
            format!(
                "{} · policy {} ({}) · {} orders",
                profile.name, run.policy, run.policy_id, args.orders
            ),
            samples,
        ));
        runs.push(run);
    }
    let report = BenchReport {
        profile: profile.name.clone(),
        orders: args.orders,
        seed: args.seed,
        runs,
        raw,
        ceiling,
        ceiling_events,
        ceiling_contract,
    };
    if let Some(path) = &args.plot {
        let panels: Vec<(String, &[Sample<OrderState>])> = plots
            .iter()
            .map(|(title, samples)| (title.clone(), samples.as_slice()))
            .collect();
        std::fs::write(
            path,
            plot::svg(&panels, "seconds since the first publish", &OrderState::ALL),
        )
        .map_err(|e| Stop::Failed(format!("cannot write {}: {e}", path.display())))?;
        eprintln!("orders by state over time: {}", path.display());
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serializes")
        );
    } else {
        report.print();
    }
    Ok(())
}

/// One run: a fresh namespace, simulator and workers under `policy`; the
/// load; the figures; everything removed again.
async fn run_once(
    args: &BenchArgs,
    profile: &BenchProfile,
    policy: &PolicyChoice,
    bin_dir: &std::path::Path,
    index: usize,
) -> Result<(RunReport, Vec<Sample<OrderState>>), Stop> {
    let namespace = format!(
        "bench-{}-{}-{index}",
        jiff::Timestamp::now().as_second(),
        std::process::id()
    );
    let ground = Ground::prepare(
        &namespace,
        &policy.policy,
        &args.place.amqp.url,
        &args.place.redis.url,
    )
    .await
    .map_err(Stop::Failed)?;
    let mut children = None;
    let result = measure(args, profile, policy, bin_dir, &ground, &mut children).await;
    if let Some(mut children) = children {
        children.stop(Duration::from_secs(10));
    }
    if args.keep {
        eprintln!("namespace {namespace} kept");
    } else {
        ground.remove().await;
        // The logs stay where a run broke an invariant or did not finish.
        if result
            .as_ref()
            .is_ok_and(|(run, _)| run.settled && run.violations.is_empty())
        {
            local_fleet::remove_run_dir(&namespace);
        }
    }
    result
}

async fn measure(
    args: &BenchArgs,
    profile: &BenchProfile,
    policy: &PolicyChoice,
    bin_dir: &std::path::Path,
    ground: &Ground,
    slot: &mut Option<Children>,
) -> Result<(RunReport, Vec<Sample<OrderState>>), Stop> {
    let namespace = &ground.namespace;
    let dir = local_fleet::run_dir(namespace).map_err(Stop::Failed)?;
    let profile_path =
        local_fleet::write_file(&dir, "profile.toml", &profile.text).map_err(Stop::Failed)?;
    let worker_policy = match &policy.text {
        Some(text) => local_fleet::write_file(&dir, "policy.toml", text)
            .map_err(Stop::Failed)?
            .display()
            .to_string(),
        None => "naive".to_owned(),
    };
    let children = slot.insert(Children::new(bin_dir.to_path_buf(), dir.clone()));
    let launched = local_fleet::launch(
        children,
        &Launch {
            namespace,
            amqp_url: &args.place.amqp.url,
            redis_url: &args.place.redis.url,
            policy: &worker_policy,
            profile: &profile_path,
        },
    )
    .await
    .map_err(Stop::Failed)?;
    eprintln!(
        "  fleet up in namespace {namespace} (simulator {}); logs in {} (kept if something breaks)",
        launched.sim_url,
        dir.display()
    );

    let (orders, placed) = local_fleet::happy_load(args.orders, args.seed);
    let publisher = local_fleet::load_publisher(&args.place.amqp.url, "bench", namespace)
        .await
        .map_err(Stop::Failed)?;
    let exchange = ground.spec.names().orders_exchange();
    let rate = args.rate.or(profile.plan.rate);

    let cpu_before = metrics::CpuMark::take(children);
    let started = Instant::now();
    let publishing = tokio::spawn(async move {
        let sent = orderflow_producer::send(&publisher, &exchange, orders, rate).await;
        publisher.close().await;
        sent
    });
    let phases_done = PhaseLog::default();
    let phases = tokio::spawn(run_phases(
        launched.sim_url.clone(),
        profile.plan.phases.clone(),
        started,
        phases_done.clone(),
    ));
    let mut samples = Vec::new();
    let settled = ground
        .watch(placed.len(), args.timeout, |at, counts| {
            samples.push(Sample {
                at: at.as_secs_f64(),
                counts: counts.clone(),
            });
        })
        .await
        .map_err(Stop::Failed)?;
    let wall = started.elapsed();
    let cpu_after = metrics::CpuMark::take(children);
    // Phases after the last order settled are not reached.
    phases.abort();
    let phases_done = std::mem::take(&mut *phases_done.lock().unwrap_or_else(|e| e.into_inner()))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(Stop::Failed)?;
    if settled == Settled::Interrupted {
        publishing.abort();
        return Err(Stop::Interrupted);
    }
    let (sent, failed) = publishing
        .await
        .map_err(|e| Stop::Failed(format!("publishing: {e}")))?;
    if let Some(problem) = failed {
        return Err(Stop::Failed(format!(
            "publishing stopped after {sent} orders: {problem}"
        )));
    }
    if settled == Settled::TimedOut {
        eprintln!(
            "  not every order settled within {:?}; reported as is",
            args.timeout
        );
    }

    let counters = metrics::scrape(&launched.workers).await;
    let rss = metrics::worker_peak_rss_mib(children);
    let records = ground.records(&placed).await.map_err(Stop::Failed)?;
    let exceptions = ground.exceptions().await.map_err(Stop::Failed)?;
    let ledger = local_fleet::ledger(&launched.sim_url)
        .await
        .map_err(Stop::Failed)?;
    let (calls, calls_per_order) = report::calls(&ledger, args.orders);
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
    let run = RunReport {
        policy: policy.label.clone(),
        policy_source: policy.source.clone(),
        policy_id: policy.policy.id().to_string(),
        namespace: namespace.clone(),
        settled: settled == Settled::All,
        seconds: wall.as_secs_f64(),
        orders_per_second: placed.len() as f64 / wall.as_secs_f64().max(0.001),
        ratio_to_raw: None,
        cpu_ratio_to_ceiling: None,
        cpu_ratio_to_ceiling_events: None,
        cpu_ratio_to_ceiling_contract: None,
        outcome: Outcome::new(&records),
        calls,
        calls_per_order,
        counters,
        exceptions,
        violations_by_invariant: report::by_invariant(&violations),
        violations: violations.iter().map(ToString::to_string).collect(),
        phases: phases_done,
        cpu_seconds_per_1000: cpu_before.per_1000(&cpu_after, placed.len()),
        worker_peak_rss_mib: rss,
    };
    Ok((run, samples))
}

/// The phases put in force so far, as `(seconds, name)`, or what went
/// wrong.
type PhaseLog = Arc<Mutex<Vec<Result<(f64, String), String>>>>;

/// Puts each phase's profile in force at its time (`PUT /_faults`), and
/// adds each to `done` as `(seconds, name)` (or what went wrong).
async fn run_phases(sim_url: String, phases: Vec<Phase>, started: Instant, done: PhaseLog) {
    let http = reqwest::Client::new();
    for phase in phases {
        tokio::time::sleep_until((started + phase.at).into()).await;
        let answer = http
            .put(format!("{sim_url}/_faults"))
            .json(&phase.body)
            .send()
            .await;
        let outcome = match answer {
            Ok(r) if r.status().is_success() => {
                eprintln!("\n  {:.1}s: {}", phase.at.as_secs_f64(), phase.name);
                Ok((phase.at.as_secs_f64(), phase.name))
            }
            Ok(r) => Err(format!(
                "PUT /_faults for phase `{}`: {} {}",
                phase.name,
                r.status(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => Err(format!("PUT /_faults for phase `{}`: {e}", phase.name)),
        };
        done.lock().unwrap_or_else(|e| e.into_inner()).push(outcome);
    }
}
