//! `orderctl`: parse the command line, run one command, map its result to
//! the documented exit codes (0 ok, 1 operation failed, 2 bad usage or
//! input, 3 refused as unsafe).

mod cli;
mod console_cmd;
mod exceptions;
mod fleet_args;
mod order_cmd;
mod policy_cmd;
mod policy_source;
mod publish;
mod stage_cmd;
mod status_cmd;
mod stream_cmd;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Policy(command) => policy_cmd::run(command),
        cli::Command::States => {
            print!("{}", orderflow_core::state::mermaid_diagram());
            ExitCode::SUCCESS
        }
        cli::Command::Publish(args) => publish::run(args),
        cli::Command::Exceptions(command) => exceptions::run(command),
        cli::Command::Status(args) => status_cmd::run(args),
        cli::Command::Order(command) => order_cmd::run(command),
        cli::Command::Stage(command) => stage_cmd::run(command),
        cli::Command::Archive(command) => stream_cmd::run_archive(command),
        cli::Command::Events(command) => stream_cmd::run_events(command),
        cli::Command::Console(args) => console_cmd::run(args),
    }
}
