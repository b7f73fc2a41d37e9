//! `orderflow-fleet`: parse the command line and run one command; each
//! command's own exit codes are in its `--help`.

mod cli;

use clap::Parser;
use orderflow_fleet::{bench, chaos, demo};
use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::Cli::parse().command {
        cli::Command::Demo(args) => demo::run(args),
        cli::Command::Bench(args) => bench::run(args),
        cli::Command::Chaos(args) => chaos::run(args),
        cli::Command::BenchBaselineWorker(args) => bench::run_baseline_worker(args),
    }
}
