//! The command line, as clap types. `--help` is the reference.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "orderflow-fleet",
    version,
    about = "Run the whole orderflow fleet on this machine: demo, benchmark, chaos"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole fleet on a demo load against the simulator, then check
    /// every invariant against its ledger.
    Demo(orderflow_fleet::demo::DemoArgs),
    /// Benchmark the fleet on a fault profile, per policy: throughput,
    /// downstream calls, retries, exceptions and invariant violations.
    ///
    /// N orders run through the simulator and the four workers as separate
    /// processes. Exit 0 when the run completed, violations or not.
    Bench(orderflow_fleet::bench::BenchArgs),
    /// Break the fleet during a run (kill workers, drop its broker
    /// connections, restart a private Redis), then check every invariant.
    ///
    /// Exit 1 when an order did not settle or an invariant broke.
    Chaos(orderflow_fleet::chaos::ChaosArgs),
    /// A baseline's worker process of `bench --baseline raw|ceiling`.
    #[command(hide = true)]
    BenchBaselineWorker(orderflow_fleet::bench::BaselineWorkerArgs),
}
