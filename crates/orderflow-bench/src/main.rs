//! `runtime-bench`: measure the runtime against raw lapin and the ceiling (`run`, the
//! default), or be one pipeline's worker process (`worker`).

use clap::{Args, Parser, Subcommand};
use orderflow_bench::runtime_pipeline::Target;
use orderflow_bench::{BenchConfig, ceiling, measure, raw, runtime_pipeline};
use orderflow_core::Policy;
use orderflow_settings::{Amqp, Redis};

#[derive(Parser)]
#[command(
    version,
    about = "Benchmark the orderflow runtime against a raw lapin pipeline and the ceiling workload"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Mode>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Mode {
    /// Run one pipeline's workers (started by `run`, and by the crash tests).
    Worker {
        #[command(subcommand)]
        pipeline: Pipeline,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
enum Pipeline {
    Runtime {
        #[arg(long)]
        namespace: String,
        /// Also publish a customer event per hop (two messages per delivery,
        /// as real stages send: the crash tests need a point between them).
        #[arg(long)]
        events: bool,
    },
    Raw {
        #[arg(long)]
        base: String,
    },
    /// The three forwarding stages of the ceiling workload.
    Ceiling {
        #[arg(long)]
        base: String,
        /// Each hop's Redis work through the runtime's store
        /// (the ceiling with records).
        #[arg(long)]
        records: bool,
    },
}

#[derive(Args)]
struct Conn {
    #[command(flatten)]
    amqp: Amqp,
    #[command(flatten)]
    redis: Redis,
    /// Unacked deliveries per consumer.
    #[arg(long, default_value_t = 64)]
    prefetch: u16,
    /// Deliveries handled at once per stage.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

#[derive(Args)]
struct RunArgs {
    /// Orders through each pipeline.
    #[arg(long, default_value_t = 2000)]
    orders: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Skip the ceiling workloads, bare and with records (measured by
    /// default, after both pipelines).
    #[arg(long)]
    no_ceiling: bool,
    #[command(flatten)]
    conn: Conn,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Mode::Worker { pipeline, conn }) => {
            // Arms the crash points named in FAILPOINTS (the crash tests).
            let _failpoints = fail::FailScenario::setup();
            let shutdown = orderflow_runtime::shutdown::on_signal()?;
            match pipeline {
                Pipeline::Runtime { namespace, events } => {
                    let target = Target {
                        amqp_url: conn.amqp.url,
                        redis_url: conn.redis.url,
                        namespace,
                    };
                    let hops = runtime_pipeline::Hops { events };
                    runtime_pipeline::worker(
                        &target,
                        Policy::default_policy(),
                        hops,
                        conn.prefetch,
                        conn.concurrency,
                        shutdown,
                    )
                    .await
                }
                Pipeline::Raw { base } => {
                    raw::worker(
                        &conn.amqp.url,
                        &base,
                        conn.prefetch,
                        conn.concurrency,
                        shutdown,
                    )
                    .await
                }
                Pipeline::Ceiling { base, records } => {
                    let load = if records {
                        ceiling::Load::WithRecords
                    } else {
                        ceiling::Load::Hops
                    };
                    ceiling::worker(&conn.amqp.url, &conn.redis.url, &base, load, shutdown).await
                }
            }
        }
        None => {
            let args = cli.run;
            let config = BenchConfig {
                amqp_url: args.conn.amqp.url,
                redis_url: args.conn.redis.url,
                orders: args.orders,
                prefetch: args.conn.prefetch,
                concurrency: args.conn.concurrency,
                ceiling: !args.no_ceiling,
                worker_exe: std::env::current_exe()?,
            };
            let report = orderflow_bench::run(&config).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let mut rows = vec![&report.raw, &report.runtime];
                rows.extend(&report.ceiling);
                rows.extend(&report.ceiling_records);
                measure::print_table(&rows, report.ratio);
                let yardsticks: Vec<_> = [
                    (&report.ceiling, report.cpu_ratio_to_ceiling),
                    (&report.ceiling_records, report.cpu_ratio_to_ceiling_records),
                ]
                .into_iter()
                .filter_map(|(figures, ratio)| Some((figures.as_ref()?, ratio?)))
                .collect();
                if !yardsticks.is_empty() {
                    measure::print_ceiling(&report.runtime, &yardsticks);
                }
            }
            Ok(())
        }
    }
}
