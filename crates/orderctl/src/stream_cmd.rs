//! `orderctl archive export` (finished orders that left Redis, as JSONL)
//! and `orderctl events tail` (the customer events stream): both read a
//! RabbitMQ stream from an offset, without taking anything from it.

use crate::fleet_args::{self, FleetArgs};
use clap::{Args, Subcommand};
use orderflow_broker::stream::Offset;
use orderflow_ops::events::{Tail, tail};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Every order archived in [--from, --to), one `order.archived/v1`
    /// JSON object per line, each order once (record and audit trail).
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Archived at or after this time (RFC 3339, e.g. 2026-01-31T00:00:00Z).
    #[arg(long)]
    pub from: jiff::Timestamp,
    /// Archived before this time [default: now].
    #[arg(long)]
    pub to: Option<jiff::Timestamp>,
    /// Write here instead of stdout.
    #[arg(long)]
    pub out: Option<String>,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print customer events from the events stream, one JSON object a
    /// line, until --limit or until the stream has nothing newer.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Only this order's events.
    #[arg(long)]
    pub order: Option<String>,
    /// first, last, next, an RFC 3339 time or an offset number.
    #[arg(long, default_value = "first", value_parser = parse_offset)]
    pub from: Offset,
    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Stop once no event came for this long (`2s`; with --from next,
    /// how long to wait for new ones).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub idle: Duration,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

fn parse_offset(text: &str) -> Result<Offset, String> {
    Offset::parse(text).map_err(|e| e.to_string())
}

pub fn run_archive(command: ArchiveCommand) -> ExitCode {
    let ArchiveCommand::Export(args) = command;
    let fleet = args.fleet.clone();
    fleet_args::run(&fleet, None, |target| async move {
        let to = args.to.unwrap_or_else(jiff::Timestamp::now);
        let result = match &args.out {
            Some(path) => match std::fs::File::create(path) {
                Ok(file) => {
                    let mut out = std::io::BufWriter::new(file);
                    let exported =
                        orderflow_ops::archive::export(&target, args.from, to, &mut out).await;
                    match out.flush() {
                        Ok(()) => exported,
                        Err(err) => Err(orderflow_ops::Error::Invalid(format!(
                            "cannot write {path}: {err}"
                        ))),
                    }
                }
                Err(err) => Err(orderflow_ops::Error::Invalid(format!(
                    "cannot create {path}: {err}"
                ))),
            },
            None => {
                let mut out = std::io::BufWriter::new(std::io::stdout());
                let exported =
                    orderflow_ops::archive::export(&target, args.from, to, &mut out).await;
                match out.flush() {
                    Ok(()) => exported,
                    Err(err) => Err(orderflow_ops::Error::Invalid(format!(
                        "cannot write the export: {err}"
                    ))),
                }
            }
        };
        match result {
            Ok(exported) => {
                eprintln!(
                    "{} orders archived from {} to {} exported ({} second copies left out)",
                    exported.orders, args.from, to, exported.duplicates
                );
                ExitCode::SUCCESS
            }
            Err(err) => fleet_args::fail(&err),
        }
    })
}

pub fn run_events(command: EventsCommand) -> ExitCode {
    let EventsCommand::Tail(args) = command;
    let fleet = args.fleet.clone();
    fleet_args::run(&fleet, None, |target| async move {
        let order = match args
            .order
            .as_deref()
            .map(orderflow_ops::target::parse_order_id)
        {
            Some(Ok(order)) => Some(order),
            Some(Err(err)) => return fleet_args::fail(&err),
            None => None,
        };
        let request = Tail {
            from: args.from,
            order,
            limit: args.limit,
            idle: args.idle,
        };
        let shown = tail(&target, &request, |event| {
            println!(
                "{}",
                serde_json::to_string(&event).expect("events serialize")
            );
        })
        .await;
        match shown {
            Ok(_) => ExitCode::SUCCESS,
            Err(err) => fleet_args::fail(&err),
        }
    })
}
