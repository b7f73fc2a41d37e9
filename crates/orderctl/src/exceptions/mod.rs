//! `orderctl exceptions …`: parse, call `orderflow_ops::exceptions`, print.
//! Tables for people, `--json` for scripts; exit codes 0 ok, 1 failed,
//! 2 bad usage or input, 3 refused as unsafe.

mod editor;
mod print;

use clap::{Args, Subcommand};
use orderflow_core::{Policy, Stage};
use orderflow_ops::exceptions::{
    self as ops, EditRequest, ExceptionQueues, HaltThreshold, Operator, ReplayOutcome,
    ReplayRequest, Selection,
};
use orderflow_ops::{Error, Kind};
use orderflow_settings::{Amqp, Namespace, PolicySource, Redis};
use orderflow_store::Store;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum ExceptionsCommand {
    /// Group the exception queues' messages by stage, failure class,
    /// certainty and reason, with counts, oldest age and the recommended
    /// action (reads without consuming).
    List(ListArgs),
    /// Show the first messages of a stage's exception queue, body and
    /// headers (without consuming).
    Peek(PeekArgs),
    /// Move a stage's exception messages into a JSONL file; each message is
    /// acknowledged only once its line is written and synced. Rerun after a
    /// kill: nothing lost, nothing written twice.
    Export(ExportArgs),
    /// Publish a file written by `export` back to the exception queues,
    /// byte for byte (messages already there are skipped).
    Import(ImportArgs),
    /// Send messages back to their stage with the attempt count reset,
    /// audited, under a replay id that never sends a message twice.
    Replay(ReplayArgs),
    /// Remove messages from a stage's exception queue, audited.
    Discard(DiscardArgs),
    /// Fix a message's body ($EDITOR, or --set path=value), check it, send
    /// the fixed copy and remove the original, audited.
    Edit(EditArgs),
    /// Every exception reason and what to do about it (docs/runbook.md).
    Reasons {
        #[arg(long)]
        json: bool,
    },
}

/// Where the fleet is.
#[derive(Debug, Args)]
pub struct Fleet {
    #[command(flatten)]
    pub namespace: Namespace,
    #[command(flatten)]
    pub amqp: Amqp,
    #[command(flatten)]
    pub redis: Redis,
}

/// Who acts, under which policy: audited with every change.
#[derive(Debug, Args)]
pub struct Acting {
    /// Who is acting, for the audit [default: ORDERFLOW_ACTOR, else $USER].
    #[arg(long, env = "ORDERFLOW_ACTOR")]
    pub actor: Option<String>,
    #[command(flatten)]
    pub policy: PolicySource,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_parser = parse_stage)]
    pub stage: Option<Stage>,
    #[arg(long)]
    pub reason: Option<String>,
    /// Messages read per queue at most.
    #[arg(long, default_value_t = ops::DEFAULT_READ_LIMIT)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub fleet: Fleet,
}

#[derive(Debug, Args)]
pub struct PeekArgs {
    #[arg(long, value_parser = parse_stage)]
    pub stage: Stage,
    #[arg(short = 'n', long = "count", default_value_t = 10)]
    pub n: usize,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub fleet: Fleet,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_parser = parse_stage)]
    pub stage: Stage,
    /// The JSONL file; appended to when it exists (lines already there are
    /// not written again); refused (exit 1) while another export writes it.
    #[arg(long)]
    pub out: PathBuf,
    /// Messages exported at most.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub fleet: Fleet,
    #[command(flatten)]
    pub acting: Acting,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A JSONL file written by `exceptions export`.
    pub file: PathBuf,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub fleet: Fleet,
    #[command(flatten)]
    pub acting: Acting,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[arg(long, value_parser = parse_stage)]
    pub stage: Stage,
    /// Message ids (as `peek` and `list` show them).
    #[arg(long = "id", num_args = 1.., required_unless_present_any = ["reason", "all"], conflicts_with_all = ["reason", "all"])]
    pub ids: Vec<String>,
    /// Every message with this reason.
    #[arg(long, conflicts_with = "all")]
    pub reason: Option<String>,
    /// Every message of the queue.
    #[arg(long)]
    pub all: bool,
    /// Show what the stage and the current policy would now do with each
    /// message; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Messages per second at most.
    #[arg(long)]
    pub rate: Option<NonZeroU32>,
    /// Send this many first and wait for their orders to leave the
    /// exception path before sending the rest.
    #[arg(long, default_value_t = 0)]
    pub canary: usize,
    /// How long to wait for the canary.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub canary_timeout: Duration,
    /// Halt once this many replayed messages came back to an exception
    /// queue (`3`), or more than this share of those sent (`10%`, `0.1`).
    #[arg(long, default_value = "10%", value_parser = parse_halt)]
    pub halt_after_failures: HaltThreshold,
    /// Rerun a replay with its id: what it sent is not sent again
    /// [default: a new id, printed].
    #[arg(long)]
    pub replay_id: Option<String>,
    /// Messages of the queue read at most.
    #[arg(long, default_value_t = ops::DEFAULT_READ_LIMIT)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub fleet: Fleet,
    #[command(flatten)]
    pub acting: Acting,
}

#[derive(Debug, Args)]
pub struct DiscardArgs {
    #[arg(long, value_parser = parse_stage)]
    pub stage: Stage,
    #[arg(long = "id", num_args = 1.., required = true)]
    pub ids: Vec<String>,
    /// Why, for the audit.
    #[arg(long)]
    pub reason: String,
    #[arg(long, default_value_t = ops::DEFAULT_READ_LIMIT)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub fleet: Fleet,
    #[command(flatten)]
    pub acting: Acting,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    #[arg(long, value_parser = parse_stage)]
    pub stage: Stage,
    #[arg(long)]
    pub id: String,
    /// `path=value` (`order_id=ord-7`, `/items/0/quantity=2`); without any,
    /// the body opens in $VISUAL or $EDITOR.
    #[arg(long = "set")]
    pub sets: Vec<String>,
    #[arg(long, default_value_t = ops::DEFAULT_READ_LIMIT)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub fleet: Fleet,
    #[command(flatten)]
    pub acting: Acting,
}

fn parse_stage(s: &str) -> Result<Stage, String> {
    s.parse()
        .map_err(|e: orderflow_core::stage::UnknownStage| e.to_string())
}

fn parse_halt(s: &str) -> Result<HaltThreshold, String> {
    s.parse()
}

pub fn run(command: ExceptionsCommand) -> ExitCode {
    if let ExceptionsCommand::Reasons { json } = command {
        print::reasons(json);
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        match dispatch(command).await {
            Ok(code) => code,
            Err(failure) => {
                eprintln!("{failure}");
                ExitCode::from(failure.kind.exit_code())
            }
        }
    })
}

/// An error, ready to print.
struct Failure {
    text: String,
    kind: Kind,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Failure {
        Failure {
            kind: err.kind(),
            text: err.to_string(),
        }
    }
}

async fn dispatch(command: ExceptionsCommand) -> Result<ExitCode, Failure> {
    match command {
        ExceptionsCommand::Reasons { .. } => unreachable!("handled before the runtime starts"),
        ExceptionsCommand::List(args) => {
            let queues = connect(&args.fleet).await?;
            let listing = ops::list(&queues, args.stage, args.reason.as_deref(), args.limit).await;
            queues.close().await;
            print::listing(&listing?, args.json);
            Ok(ExitCode::SUCCESS)
        }
        ExceptionsCommand::Peek(args) => {
            let queues = connect(&args.fleet).await?;
            let peeked = ops::peek(&queues, args.stage, args.n).await;
            queues.close().await;
            print::peeked(&peeked?, args.json);
            Ok(ExitCode::SUCCESS)
        }
        ExceptionsCommand::Export(args) => {
            let acted = connect_acting(&args.fleet, &args.acting).await?;
            let (queues, op) = (&acted.queues, acted.operator());
            let report = ops::export(queues, &op, args.stage, &args.out, args.limit).await;
            queues.close().await;
            print::exported(&report?, args.json);
            Ok(ExitCode::SUCCESS)
        }
        ExceptionsCommand::Import(args) => {
            let acted = connect_acting(&args.fleet, &args.acting).await?;
            let (queues, op) = (&acted.queues, acted.operator());
            let report = ops::import(queues, &op, &args.file).await;
            queues.close().await;
            print::imported(&report?, args.json);
            Ok(ExitCode::SUCCESS)
        }
        ExceptionsCommand::Replay(args) => replay(args).await,
        ExceptionsCommand::Discard(args) => {
            let acted = connect_acting(&args.fleet, &args.acting).await?;
            let (queues, op) = (&acted.queues, acted.operator());
            let report =
                ops::discard(queues, &op, args.stage, &args.ids, &args.reason, args.limit).await;
            queues.close().await;
            print::discarded(&report?, args.json);
            Ok(ExitCode::SUCCESS)
        }
        ExceptionsCommand::Edit(args) => edit(args).await,
    }
}

async fn replay(args: ReplayArgs) -> Result<ExitCode, Failure> {
    let acted = connect_acting(&args.fleet, &args.acting).await?;
    let (queues, op) = (&acted.queues, acted.operator());
    let selection = match (&args.reason, args.all) {
        (Some(reason), _) => Selection::Reason(reason.clone()),
        (None, true) => Selection::All,
        (None, false) => Selection::Ids(args.ids.clone()),
    };
    let replay_id = args.replay_id.clone().unwrap_or_else(ops::new_replay_id);
    if !args.dry_run {
        eprintln!("replay id {replay_id} (rerun with --replay-id {replay_id} to resume it)");
    }
    let request = ReplayRequest {
        stage: args.stage,
        selection,
        dry_run: args.dry_run,
        rate: args.rate,
        canary: args.canary,
        canary_timeout: args.canary_timeout,
        halt: args.halt_after_failures,
        replay_id,
        limit: args.limit,
    };
    let report = ops::replay(queues, &op, &request).await;
    queues.close().await;
    let report = report?;
    print::replayed(&report, args.json);
    let outcome = |o: ReplayOutcome| report.messages.iter().any(|m| m.outcome == o);
    Ok(if report.dry_run {
        ExitCode::SUCCESS
    } else if let Some(halt) = &report.halted {
        eprintln!("replay halted: {halt}");
        eprintln!(
            "what was sent stays sent; rerun with --replay-id {} once the cause is fixed",
            report.replay_id
        );
        ExitCode::from(1)
    } else if outcome(ReplayOutcome::Skipped) {
        eprintln!(
            "some messages were not sent and stayed in the queue, each saying why: a body that still breaks its contract is fixed with `orderctl exceptions edit`; a step past the replay window is settled by hand, then discarded"
        );
        ExitCode::from(2)
    } else if outcome(ReplayOutcome::Busy) {
        eprintln!("another run of this replay id holds some messages; they stayed in the queue");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn edit(args: EditArgs) -> Result<ExitCode, Failure> {
    let acted = connect_acting(&args.fleet, &args.acting).await?;
    let (queues, op) = (&acted.queues, acted.operator());
    let result = async {
        let subject = ops::open_edit(queues, args.stage, &args.id, args.limit).await?;
        let body = if args.sets.is_empty() {
            editor::edit(&subject)?
        } else {
            ops::apply_sets(&subject.body, &args.sets)?
        };
        if let Err(err) = ops::check_body(args.stage, &body) {
            return Err(Failure {
                kind: err.kind(),
                text: format!(
                    "{err}\nthe original message is still in the queue; nothing was sent"
                ),
            });
        }
        let request = EditRequest {
            stage: args.stage,
            id: args.id.clone(),
            expected_sha256: subject.sha256.clone(),
            body,
            limit: args.limit,
        };
        Ok(ops::edit(queues, &op, &request).await?)
    }
    .await;
    queues.close().await;
    print::edited(&result?, args.json);
    Ok(ExitCode::SUCCESS)
}

async fn connect(fleet: &Fleet) -> Result<ExceptionQueues, Failure> {
    match ExceptionQueues::connect(&fleet.amqp.url, &fleet.namespace.name).await {
        Ok(queues) => Ok(queues),
        Err(err @ Error::NoSuchQueue { .. }) => {
            let mut failure = Failure::from(err);
            if let Some(known) = known_namespaces(fleet).await {
                failure.text.push_str(&known);
            }
            Err(failure)
        }
        Err(err) => Err(err.into()),
    }
}

/// "namespaces with orders or workers here: …", when Redis answers.
async fn known_namespaces(fleet: &Fleet) -> Option<String> {
    let store = Store::connect(&fleet.redis.url, "orderctl").await.ok()?;
    let known = store.known_namespaces().await.ok()?;
    Some(if known.is_empty() {
        "\nno namespace has orders or workers in this Redis".to_owned()
    } else {
        format!(
            "\nnamespaces with orders or workers in this Redis: {}",
            known.join(", ")
        )
    })
}

/// What an audited action needs: the queues, the store, the policy and who
/// acts.
struct Acted {
    queues: ExceptionQueues,
    store: Store,
    policy: Policy,
    actor: String,
}

impl Acted {
    fn operator(&self) -> Operator<'_> {
        Operator {
            store: &self.store,
            policy: &self.policy,
            actor: &self.actor,
        }
    }
}

async fn connect_acting(fleet: &Fleet, acting: &Acting) -> Result<Acted, Failure> {
    let policy = crate::policy_source::load(&acting.policy.spec).map_err(|err| Failure {
        kind: Kind::Invalid,
        text: err.to_string(),
    })?;
    let store = Store::connect(&fleet.redis.url, &fleet.namespace.name)
        .await
        .map_err(|err| Failure {
            kind: if matches!(err.class(), orderflow_store::ErrorClass::Invalid) {
                Kind::Invalid
            } else {
                Kind::Failed
            },
            text: format!(
                "cannot use Redis (--redis-url, ORDERFLOW_REDIS_URL): {err}; is it running?"
            ),
        })?;
    let queues = connect(fleet).await?;
    Ok(Acted {
        queues,
        store,
        policy,
        actor: actor(acting),
    })
}

/// `--actor`, else ORDERFLOW_ACTOR (through clap), else the OS user.
fn actor(acting: &Acting) -> String {
    acting
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_default()
}
