//! `orderctl stage pause|resume S`: every worker of the stage stops taking
//! deliveries within seconds (messages wait in the queue), or starts
//! again; audited in the fleet audit stream, shown by `orderctl status`.

use crate::fleet_args::{self, FleetArgs, ago};
use clap::{Args, Subcommand};
use orderflow_core::Stage;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum StageCommand {
    /// Stop every worker of the stage taking deliveries (in-flight ones
    /// finish), e.g. during a provider outage.
    Pause(StageArgs),
    /// Let the stage's workers take deliveries again.
    Resume(StageArgs),
}

#[derive(Debug, Args)]
pub struct StageArgs {
    #[arg(value_parser = parse_stage)]
    pub stage: Stage,
    /// Why: required, written to the fleet audit stream.
    #[arg(long)]
    pub reason: String,
    /// Who is acting, audited as `operator:<actor>` [default: $USER].
    #[arg(long, env = "ORDERFLOW_ACTOR")]
    pub actor: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

fn parse_stage(s: &str) -> Result<Stage, String> {
    s.parse()
        .map_err(|e: orderflow_core::stage::UnknownStage| e.to_string())
}

pub fn run(command: StageCommand) -> ExitCode {
    let (pause, args) = match command {
        StageCommand::Pause(args) => (true, args),
        StageCommand::Resume(args) => (false, args),
    };
    let fleet = args.fleet.clone();
    fleet_args::run(&fleet, None, |target| async move {
        let operator = fleet_args::operator(args.actor.as_deref());
        if pause {
            match orderflow_ops::pause_stage(&target, args.stage, &args.reason, &operator).await {
                Ok(report) if args.json => fleet_args::print_json(&report),
                Ok(report) if report.already => println!(
                    "stage {} was already paused {} ago by {} ({}); that pause stands",
                    report.stage,
                    ago(report.pause.since),
                    report.pause.actor,
                    report.pause.reason
                ),
                Ok(report) => println!(
                    "stage {} paused by {}: its workers stop taking deliveries within seconds (in-flight ones finish); messages wait in the queue. Check with `orderctl status`; resume with `orderctl stage resume {}`",
                    report.stage, report.pause.actor, report.stage
                ),
                Err(err) => return fleet_args::fail(&err),
            }
        } else {
            match orderflow_ops::resume_stage(&target, args.stage, &args.reason, &operator).await {
                Ok(report) if args.json => fleet_args::print_json(&report),
                Ok(report) => match &report.ended {
                    Some(pause) => println!(
                        "stage {} resumed after {} (paused by {}: {}); its workers take deliveries again within seconds",
                        report.stage,
                        ago(pause.since),
                        pause.actor,
                        pause.reason
                    ),
                    None => println!("stage {} was not paused; nothing changed", report.stage),
                },
                Err(err) => return fleet_args::fail(&err),
            }
        }
        ExitCode::SUCCESS
    })
}
