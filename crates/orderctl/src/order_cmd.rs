//! `orderctl order …`: one order in full, orders by state, and the audited
//! manual actions (resolve, retry, cancel, unblock).

use crate::fleet_args::{self, ActorArgs, ApiArgs, FleetArgs, ago, when};
use clap::{Args, Subcommand, ValueEnum};
use orderflow_console::table::{Table, or_dash};
use orderflow_core::{OrderState, Stage};
use orderflow_ops::{
    ActionInput, ActionReport, CancelBy, CancelPlan, Decision, Done, ListFilter, OrderList,
    OrderView, PaymentOutcome, Target,
};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum OrderCommand {
    /// An order in full: state and reason, each stage's outcome and
    /// certainty, the downstream ids, the audit timeline, what to do next.
    Show(ShowArgs),
    /// The orders in one state, longest there first.
    List(ListArgs),
    /// Settle a payment whose outcome the fleet does not know, after
    /// checking with the provider: succeeded → paid and on to shipping;
    /// failed → reservation released → rejected.
    Resolve(ResolveArgs),
    /// Send an escalated or blocked order back to a stage's entry state,
    /// its run counter reset. Where the stage's operation may have taken
    /// effect, the stage asks the provider by key first; refused (exit 3)
    /// when the provider cannot say.
    Retry(RetryArgs),
    /// Print what cancelling the order would do; act with --yes.
    Cancel(CancelArgs),
    /// Decide about a blocked order: ship it after all, or refund and
    /// release it.
    Unblock(UnblockArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    pub order_id: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_parser = parse_from_str::<OrderState>)]
    pub state: OrderState,
    /// Only orders whose reason starts with this.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only orders in the state for at least this long (`10m`, `2h`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub older_than: Option<Duration>,
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// The only stage whose outcome an operator resolves by hand.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ResolvableStage {
    Payment,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutcomeArg {
    Succeeded,
    Failed,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    pub order_id: String,
    #[arg(long, value_enum)]
    pub stage: ResolvableStage,
    #[arg(long, value_enum)]
    pub outcome: OutcomeArg,
    /// The charge you checked (succeeded only); without it the provider's
    /// status query must confirm the charge.
    #[arg(long)]
    pub payment_id: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub actor: ActorArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub apis: ApiArgs,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    pub order_id: String,
    #[arg(long, value_parser = parse_from_str::<Stage>)]
    pub stage: Stage,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub actor: ActorArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub order_id: String,
    /// Act; without it the plan is printed and nothing changes.
    #[arg(long)]
    pub yes: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub actor: ActorArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub apis: ApiArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DecisionArg {
    /// Ship it after all (or keep a shipment already accepted).
    Ship,
    /// Refund the payment, release the reservation: cancelled.
    Refund,
}

#[derive(Debug, Args)]
pub struct UnblockArgs {
    pub order_id: String,
    #[arg(long, value_enum)]
    pub decision: DecisionArg,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub actor: ActorArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub apis: ApiArgs,
}

fn parse_from_str<T: std::str::FromStr<Err: std::fmt::Display>>(s: &str) -> Result<T, String> {
    s.parse().map_err(|e: T::Err| e.to_string())
}

pub fn run(command: OrderCommand) -> ExitCode {
    match command {
        OrderCommand::Show(args) => {
            let fleet = args.fleet.clone();
            fleet_args::run(&fleet, None, |target| async move {
                match orderflow_ops::show_order(&target, &args.order_id).await {
                    Ok(view) if args.json => done(|| fleet_args::print_json(&view)),
                    Ok(view) => done(|| print!("{}", render_order(&view))),
                    Err(err) => fleet_args::fail(&err),
                }
            })
        }
        OrderCommand::List(args) => {
            let fleet = args.fleet.clone();
            fleet_args::run(&fleet, None, |target| async move {
                let filter = ListFilter {
                    state: args.state,
                    reason: args.reason.clone(),
                    older_than: args.older_than,
                    limit: usize::try_from(args.limit).unwrap_or(usize::MAX),
                };
                match orderflow_ops::list_orders(&target, &filter).await {
                    Ok(list) if args.json => done(|| fleet_args::print_json(&list)),
                    Ok(list) => done(|| print!("{}", render_list(&list))),
                    Err(err) => fleet_args::fail(&err),
                }
            })
        }
        OrderCommand::Resolve(args) => {
            let outcome = match args.outcome {
                OutcomeArg::Succeeded => PaymentOutcome::Succeeded,
                OutcomeArg::Failed => PaymentOutcome::Failed,
            };
            let ResolvableStage::Payment = args.stage;
            let (fleet, apis) = (args.fleet.clone(), args.apis.clone());
            act(&fleet, Some(&apis), args.json, |target| async move {
                let input = input(&args.order_id, &args.actor);
                orderflow_ops::resolve_payment(&target, &input, outcome, args.payment_id.clone())
                    .await
            })
        }
        OrderCommand::Retry(args) => {
            let fleet = args.fleet.clone();
            act(&fleet, None, args.json, |target| async move {
                orderflow_ops::retry(&target, &input(&args.order_id, &args.actor), args.stage).await
            })
        }
        OrderCommand::Cancel(args) => cancel(args),
        OrderCommand::Unblock(args) => {
            let decision = match args.decision {
                DecisionArg::Ship => Decision::Ship,
                DecisionArg::Refund => Decision::Refund,
            };
            let (fleet, apis) = (args.fleet.clone(), args.apis.clone());
            act(&fleet, Some(&apis), args.json, |target| async move {
                orderflow_ops::unblock(&target, &input(&args.order_id, &args.actor), decision).await
            })
        }
    }
}

fn done(print: impl FnOnce()) -> ExitCode {
    print();
    ExitCode::SUCCESS
}

fn input(order_id: &str, actor: &ActorArgs) -> ActionInput {
    ActionInput {
        order_id: order_id.to_owned(),
        reason: actor.reason.clone(),
        operator: actor.operator(),
        action_id: actor.action_id.clone(),
    }
}

/// Runs an action and prints its report.
fn act<F, Fut>(fleet: &FleetArgs, apis: Option<&ApiArgs>, json: bool, action: F) -> ExitCode
where
    F: FnOnce(Target) -> Fut,
    Fut: Future<Output = orderflow_ops::error::Result<ActionReport>>,
{
    fleet_args::run(fleet, apis, |target| async move {
        match action(target).await {
            Ok(report) if json => done(|| fleet_args::print_json(&report)),
            Ok(report) => done(|| print!("{}", render_report(&report))),
            Err(err) => fleet_args::fail(&err),
        }
    })
}

fn cancel(args: CancelArgs) -> ExitCode {
    let (fleet, apis) = (args.fleet.clone(), args.apis.clone());
    if args.yes {
        return act(&fleet, Some(&apis), args.json, |target| async move {
            orderflow_ops::cancel(&target, &input(&args.order_id, &args.actor)).await
        });
    }
    fleet_args::run(&fleet, None, |target| async move {
        match orderflow_ops::cancel_plan(&target, &args.order_id).await {
            Ok(plan) => {
                if args.json {
                    fleet_args::print_json(&plan);
                } else {
                    print!("{}", render_plan(&plan));
                }
                match plan.by {
                    CancelBy::Refused => ExitCode::from(3),
                    CancelBy::Fleet | CancelBy::Operator => ExitCode::SUCCESS,
                }
            }
            Err(err) => fleet_args::fail(&err),
        }
    })
}

fn render_order(view: &OrderView) -> String {
    let mut out = format!(
        "order {}  {}{}\n",
        view.order_id,
        view.state,
        view.reason
            .as_deref()
            .map(|r| format!("  ({r})"))
            .unwrap_or_default()
    );
    if let Some(archived) = &view.archived {
        out.push_str(&format!(
            "  archived {} to stream {} (offset {}): finished and past retention.finished_for, it is no longer in Redis; shown from the archive\n",
            when(archived.archived_at),
            archived.stream,
            archived.offset
        ));
    }
    if let Some(from) = view.escalated_from {
        out.push_str(&format!("  escalated from {from}\n"));
    }
    if let Some(cancel) = &view.cancel_requested {
        out.push_str(&format!("  cancellation requested: {cancel}\n"));
    }
    out.push_str(&format!(
        "  version {} · correlation {} · policy {}\n  created {} · in this state since {} ({} ago)\n\n",
        view.version,
        view.correlation_id,
        view.policy_id,
        when(view.created_at),
        when(view.updated_at),
        ago(view.updated_at)
    ));
    let mut stages = Table::new(&["STAGE", "LAST OUTCOME", "DOWNSTREAM ID", "RUNS"]);
    for stage in &view.stages {
        let outcome = match (stage.class, stage.certainty) {
            (Some(class), Some(certainty)) => format!("{class} / {certainty}"),
            _ => "-".to_owned(),
        };
        stages.row(vec![
            stage.stage.to_string(),
            outcome,
            or_dash(stage.downstream_id.as_ref()),
            stage.runs.to_string(),
        ]);
    }
    out.push_str(&stages.render());
    out.push('\n');
    let mut timeline = Table::new(&["AT", "ACTOR", "MOVE", "EVENT", "REASON", "RULE", "POLICY"]);
    for entry in &view.timeline {
        let step = match entry.from {
            None => format!("→ {}", entry.to),
            Some(from) if from == entry.to => format!("({from})"),
            Some(from) => format!("{from} → {}", entry.to),
        };
        timeline.row(vec![
            when(entry.at),
            entry.actor.clone(),
            step,
            entry.event.clone(),
            or_dash(entry.reason.as_ref()),
            or_dash(entry.rule.as_ref()),
            entry.policy_id.clone(),
        ]);
    }
    out.push_str(&timeline.render());
    if !view.next_steps.is_empty() {
        out.push_str("\nnext:\n");
        for step in &view.next_steps {
            out.push_str(&format!("  {step}\n"));
        }
    }
    out
}

fn render_list(list: &OrderList) -> String {
    if list.orders.is_empty() {
        let mut out = format!("no {} orders match\n", list.state);
        if let Some(hint) = &list.hint {
            out.push_str(&format!("({hint})\n"));
        }
        return out;
    }
    let mut table = Table::new(&["ORDER", "SINCE", "FOR", "REASON", "CANCEL REQUESTED"]);
    for order in &list.orders {
        table.row(vec![
            order.order_id.clone(),
            when(order.since),
            ago(order.since),
            or_dash(order.reason.as_ref()),
            or_dash(order.cancel_requested.as_ref()),
        ]);
    }
    let mut out = table.render();
    out.push_str(&format!(
        "{} {} order(s){}\n",
        list.orders.len(),
        list.state,
        if list.truncated {
            " shown; more match (raise --limit)"
        } else {
            ""
        }
    ));
    out
}

fn render_report(report: &ActionReport) -> String {
    let moved = match report.to {
        Some(to) => format!("{} → {to}", report.from),
        None => format!("{} (the fleet moves it)", report.from),
    };
    let headline = match report.done {
        Done::Acted => format!(
            "{} of order {}: {moved}",
            report.action.as_str(),
            report.order_id
        ),
        Done::Repeated => format!(
            "{} of order {} was already done: {moved}; nothing was done again",
            report.action.as_str(),
            report.order_id
        ),
        Done::Requested => format!(
            "cancellation of order {} requested: {moved}",
            report.order_id
        ),
    };
    let mut out = format!(
        "{headline}\n  action id {} · by {} · reason: {}\n",
        report.action_id, report.actor, report.reason
    );
    if let Some(version) = report.version {
        out.push_str(&format!("  order version {version}\n"));
    }
    for compensation in &report.compensations {
        out.push_str(&format!("  compensated: {compensation}\n"));
    }
    for message in &report.published {
        let to = if message.exchange.is_empty() {
            format!("queue {}", message.routing_key)
        } else {
            format!("{} ({})", message.exchange, message.routing_key)
        };
        out.push_str(&format!(
            "  published: {to}{}\n",
            message
                .message_id
                .as_deref()
                .map(|id| format!(" [{id}]"))
                .unwrap_or_default()
        ));
    }
    for note in &report.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    out
}

fn render_plan(plan: &CancelPlan) -> String {
    match plan.by {
        CancelBy::Refused => format!(
            "cancelling order {} ({}) is refused: {}\n",
            plan.order_id,
            plan.state,
            plan.refusal.as_deref().unwrap_or("unsafe in this state")
        ),
        CancelBy::Fleet | CancelBy::Operator => {
            let who = match plan.by {
                CancelBy::Fleet => "the fleet, told by an order.cancel message",
                _ => "this command itself",
            };
            let mut out = format!(
                "cancelling order {} ({}) would be carried out by {who}:\n",
                plan.order_id, plan.state
            );
            for step in &plan.steps {
                out.push_str(&format!("  - {step}\n"));
            }
            out.push_str("nothing was done: add --yes to act\n");
            out
        }
    }
}
