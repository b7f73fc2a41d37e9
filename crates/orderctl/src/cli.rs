//! The command line, as clap types. `--help` is the reference.

use clap::{Args, Parser, Subcommand};
use orderflow_core::decide::FulfilmentStep;
use orderflow_core::{Certainty, FailureClass, Stage};
use orderflow_producer::Mix;
use orderflow_settings::{Amqp, DEFAULT_POLICY, Namespace, POLICY, PolicySource};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "orderctl", version, about = "Operate an orderflow fleet")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check, show and explain the fleet policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print the order state machine as a Mermaid diagram.
    States,
    /// Publish producer messages: generated demo orders or a JSONL file.
    Publish(PublishArgs),
    /// Exception queues: list, peek, export/import, replay, discard, edit.
    #[command(subcommand)]
    Exceptions(crate::exceptions::ExceptionsCommand),
    /// The fleet at a glance: queues, delay tiers, exceptions, orders by
    /// state, breakers and budgets, live workers and their policies,
    /// paused stages.
    Status(crate::status_cmd::StatusArgs),
    /// One order in full, orders by state, and audited manual recovery.
    #[command(subcommand)]
    Order(crate::order_cmd::OrderCommand),
    /// The archive of finished orders that left Redis: export a time range.
    #[command(subcommand)]
    Archive(crate::stream_cmd::ArchiveCommand),
    /// The customer events stream: read it from any offset.
    #[command(subcommand)]
    Events(crate::stream_cmd::EventsCommand),
    /// Pause or resume every worker of a stage.
    #[command(subcommand)]
    Stage(crate::stage_cmd::StageCommand),
    /// The operator console in the browser: fleet, exceptions, orders, with
    /// the same audited actions as these commands.
    Console(crate::console_cmd::ConsoleArgs),
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Orders to generate (ignored with --file).
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Seed of the generated orders: the same seed, the same orders.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// What the generated orders ask for.
    #[arg(long, value_enum, default_value_t = Mix::Mixed)]
    pub mix: Mix,
    /// A JSONL file of `order.placed/v1` and `order.cancel/v1` messages,
    /// checked line by line before anything is sent.
    #[arg(long)]
    pub file: Option<String>,
    /// Messages per second at most (default: as fast as confirmed).
    #[arg(long)]
    pub rate: Option<u32>,
    #[command(flatten)]
    pub namespace: Namespace,
    #[command(flatten)]
    pub amqp: Amqp,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy; print its id (exit 0) or every problem (exit 2).
    Check {
        /// A policy file, or a preset name (`default`, `naive`).
        #[arg(env = POLICY.env, default_value = DEFAULT_POLICY)]
        policy: String,
        #[arg(long)]
        json: bool,
    },
    /// Print the effective policy, defaults filled in.
    Show {
        /// A policy file, or a preset name (`default`, `naive`).
        #[arg(env = POLICY.env, default_value = DEFAULT_POLICY)]
        policy: String,
    },
    /// Print the decision the policy makes for one situation, and the rule.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[arg(long, value_parser = parse_from_str::<Stage>)]
    pub stage: Stage,
    /// The outcome's failure class.
    #[arg(long, value_parser = parse_from_str::<FailureClass>, required_unless_present = "fulfilment")]
    pub class: Option<FailureClass>,
    /// The outcome's certainty.
    #[arg(long, value_parser = parse_from_str::<Certainty>, required_unless_present = "fulfilment")]
    pub certainty: Option<Certainty>,
    /// The provider's code or body status (`card_declined`, `processing`).
    #[arg(long)]
    pub code: Option<String>,
    /// In-process attempt of this delivery, 1-based.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub attempt: u32,
    /// Times the step was already deferred or re-checked.
    #[arg(long, default_value_t = 0)]
    pub deferrals: u32,
    /// Time since the stage's first attempt (tracking: since last progress).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub elapsed: Duration,
    /// The downstream's Retry-After.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub retry_after: Option<Duration>,
    /// A status query already answered for this outcome.
    #[arg(long)]
    pub queried: bool,
    /// Override the declared capability: does the downstream honour keys?
    #[arg(long)]
    pub idempotent: Option<bool>,
    /// Override the declared capability: does it answer status queries?
    #[arg(long)]
    pub status_query: Option<bool>,
    #[arg(long)]
    pub breaker_open: bool,
    #[arg(long)]
    pub budget_spent: bool,
    /// The order was cancelled or superseded meanwhile.
    #[arg(long)]
    pub cancelled: bool,
    /// The order's shipment was already accepted.
    #[arg(long)]
    pub shipment_accepted: bool,
    /// Explain fulfilment tracking of an accepted shipment at this step
    /// instead of a stage call (`--stage shipping`).
    #[arg(long, value_parser = parse_from_str::<FulfilmentStep>, conflicts_with_all = ["class", "certainty"])]
    pub fulfilment: Option<FulfilmentStep>,
    #[command(flatten)]
    pub policy: PolicySource,
    #[arg(long)]
    pub json: bool,
}

fn parse_from_str<T: std::str::FromStr<Err: std::fmt::Display>>(s: &str) -> Result<T, String> {
    s.parse().map_err(|e: T::Err| e.to_string())
}
