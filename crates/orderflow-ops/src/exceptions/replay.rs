//! `exceptions replay`: messages back to their stage, governed.
//!
//! Each selected message is sent as a fresh copy (never the broker's
//! `x-death`) that keeps its message id and its first attempt
//! (`orderflow-first-attempt-at`, so the replay window counts from it
//! however often a step is parked and replayed), with the attempt count
//! reset (`orderflow-attempt` = 1) and the replay id in
//! `orderflow-replay-id`: step messages to the stage's work
//! queue, producers' messages to the ingress exchange with their routing
//! key. Per message: claim it for this replay id in the store → publish,
//! confirmed → audit note → mark it sent → acknowledge the original. A
//! second run with the same replay id finds the mark and only acknowledges;
//! a concurrent one finds the claim and leaves the message alone. The copy
//! keeps the message id, so even a copy sent twice (a run killed between
//! its publish and its mark, past the claim's expiry) is re-emitted by the
//! stage from its idempotency record rather than run again.
//!
//! Governance: `dry_run` predicts and sends nothing; `rate` caps messages
//! per second; `canary` sends that many first and waits for their orders to
//! leave the exception path (the order moved, and no new exception message
//! for it); the run halts by itself when replayed messages come back to an
//! exception queue above the [`HaltThreshold`].

use super::audit::{Action, Audited};
use super::message::{BodyKind, REPLAY_ID_HEADER, VALIDATION_ERRORS_HEADER};
use super::{Error, ExceptionQueues, Held, Operator};
use governor::{Quota, RateLimiter};
use orderflow_broker::names::{ORDER_CANCEL, ORDER_PLACED};
use orderflow_broker::{Incoming, Meta, Names, Outgoing};
use orderflow_core::message::{OrderId, Problem, parse_inbound};
use orderflow_core::{Decision, OrderState, Outcome, Policy, Stage};
use orderflow_downstream::resolve_on;
use orderflow_runtime::{Job, StepMessage};
use orderflow_stages::operation::Shape;
use orderflow_stages::{Foresight, foresee};
use orderflow_store::{OrderRecord, ReplayClaim};
use serde::Serialize;
use std::collections::HashSet;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// How long a claim holds a message for one run: publishing and auditing
/// one message takes milliseconds.
const CLAIM_TTL: Duration = Duration::from_secs(60);
/// How long a replay id remembers what it sent.
const SENT_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often the exception queues are read for messages that came back.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often a canary's orders are looked at while waiting.
const CANARY_POLL: Duration = Duration::from_millis(500);
/// Messages read per exception queue when looking for ones that came back.
const WATCH_LIMIT: usize = 10_000;

/// Which messages to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Ids(Vec<String>),
    Reason(String),
    All,
}

/// When a replay halts by itself: replayed messages that came back to an
/// exception queue, as a number or as a share of those sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HaltThreshold {
    /// Halt once this many came back.
    Count(u32),
    /// Halt once more than this share (0–1) of those sent came back.
    Ratio(f64),
}

impl Default for HaltThreshold {
    fn default() -> HaltThreshold {
        HaltThreshold::Ratio(0.1)
    }
}

impl HaltThreshold {
    fn reached(self, came_back: usize, sent: usize) -> bool {
        match self {
            HaltThreshold::Count(n) => came_back >= n as usize,
            HaltThreshold::Ratio(r) => {
                sent > 0 && came_back > 0 && came_back as f64 / sent as f64 > r
            }
        }
    }
}

impl FromStr for HaltThreshold {
    type Err = String;

    /// `5` (a count), `10%` or `0.1` (a share).
    fn from_str(s: &str) -> Result<HaltThreshold, String> {
        let bad = || format!("`{s}`: give a count (`5`) or a share (`10%`, `0.1`)");
        if let Some(percent) = s.strip_suffix('%') {
            let p: f64 = percent.trim().parse().map_err(|_| bad())?;
            return if p > 0.0 && p <= 100.0 {
                Ok(HaltThreshold::Ratio(p / 100.0))
            } else {
                Err(bad())
            };
        }
        if let Ok(n) = s.parse::<u32>() {
            return if n > 0 {
                Ok(HaltThreshold::Count(n))
            } else {
                Err(bad())
            };
        }
        match s.parse::<f64>() {
            Ok(r) if r > 0.0 && r <= 1.0 => Ok(HaltThreshold::Ratio(r)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for HaltThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HaltThreshold::Count(n) => write!(f, "{n} came back"),
            HaltThreshold::Ratio(r) => write!(f, "more than {}% came back", r * 100.0),
        }
    }
}

/// One replay.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    pub stage: Stage,
    pub selection: Selection,
    pub dry_run: bool,
    /// Messages per second at most.
    pub rate: Option<NonZeroU32>,
    /// Send this many first and wait for their outcome.
    pub canary: usize,
    /// How long to wait for the canary's orders.
    pub canary_timeout: Duration,
    pub halt: HaltThreshold,
    /// [`new_replay_id`] when the operator gave none.
    pub replay_id: String,
    /// Messages of the queue read at most.
    pub limit: usize,
}

/// A fresh replay id: `r-` and a time-ordered uuid.
pub fn new_replay_id() -> String {
    format!("r-{}", uuid::Uuid::now_v7().simple())
}

/// What happened to one selected message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayOutcome {
    /// Dry run: would be sent.
    Planned,
    Sent,
    /// Sent under this replay id before; the original was acknowledged now.
    AlreadySent,
    /// Not sent: its body still breaks its contract (edit it instead).
    Skipped,
    /// Another run of this replay id holds it right now.
    Busy,
    /// Not sent because the replay halted first; still in the queue.
    NotSent,
    /// Sent, and came back to an exception queue.
    CameBack,
}

/// What the replay would do, or did, with one message.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayedMessage {
    pub id: String,
    pub order_id: Option<String>,
    pub reason: String,
    pub kind: BodyKind,
    /// `queue NAME` or `exchange NAME, key KEY`; `None` when it cannot go
    /// anywhere (an unreadable body).
    pub destination: Option<String>,
    pub outcome: ReplayOutcome,
    pub detail: Option<String>,
    /// Dry run only.
    pub prediction: Option<Prediction>,
    pub audit: Option<Audited>,
}

/// What the stage would do with the message now (a dry run).
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub order_state: Option<OrderState>,
    /// In words, from the order's current state.
    pub stage_will: String,
    /// What the current policy decides if the downstream answers as it did
    /// (when the message says how it answered and the order exists).
    pub policy: Option<PolicyDecision>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyDecision {
    /// The stage would reach this decision now: it runs the order's work
    /// (false: the stage absorbs the message, so this only says what the
    /// policy makes of the outcome today).
    pub applies: bool,
    pub decision: Decision,
    pub rule: &'static str,
    pub policy_id: String,
    /// The situation decided: outcome, earlier runs, time in state.
    pub given: String,
}

/// Why a replay stopped before the end.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "why")]
pub enum Halt {
    /// Replayed messages came back to exception queues above the threshold.
    CameBack {
        came_back: usize,
        sent: usize,
        threshold: String,
    },
    /// A canary message came back.
    CanaryCameBack { ids: Vec<String> },
    /// The canary's orders did not move within the wait.
    CanaryUnsettled {
        ids: Vec<String>,
        waited_secs: u64,
        states: Vec<String>,
    },
    /// Publishing, auditing or acknowledging failed; what was sent stays
    /// sent and recorded.
    Failed { error: String },
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Halt::CameBack {
                came_back,
                sent,
                threshold,
            } => write!(
                f,
                "{came_back} of {sent} replayed messages came back to an exception queue (halt when {threshold})"
            ),
            Halt::CanaryCameBack { ids } => {
                write!(
                    f,
                    "canary came back to an exception queue: {}",
                    ids.join(", ")
                )
            }
            Halt::CanaryUnsettled {
                ids,
                waited_secs,
                states,
            } => write!(
                f,
                "canary did not leave the exception path within {waited_secs}s: {} ({})",
                ids.join(", "),
                states.join(", ")
            ),
            Halt::Failed { error } => write!(f, "{error}"),
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub replay_id: String,
    pub stage: Stage,
    pub dry_run: bool,
    pub messages: Vec<ReplayedMessage>,
    pub sent: usize,
    pub already_sent: usize,
    pub skipped: usize,
    pub busy: usize,
    pub not_sent: usize,
    pub came_back: usize,
    pub halted: Option<Halt>,
}

impl ReplayReport {
    fn count(&mut self) {
        let n = |o: ReplayOutcome| self.messages.iter().filter(|m| m.outcome == o).count();
        let (came_back, sent) = (n(ReplayOutcome::CameBack), n(ReplayOutcome::Sent));
        (self.sent, self.came_back) = (sent + came_back, came_back);
        self.already_sent = n(ReplayOutcome::AlreadySent);
        self.skipped = n(ReplayOutcome::Skipped);
        self.busy = n(ReplayOutcome::Busy);
        self.not_sent = n(ReplayOutcome::NotSent);
    }
}

/// Replays the selected messages of the stage's exception queue.
pub async fn replay(
    queues: &ExceptionQueues,
    op: &Operator<'_>,
    request: &ReplayRequest,
) -> Result<ReplayReport, Error> {
    if !request.dry_run {
        op.audit_actor()?;
    }
    if let Selection::Ids(ids) = &request.selection
        && ids.is_empty()
    {
        return Err(Error::Invalid("name at least one message id".to_owned()));
    }
    let scan = queues.scan(request.stage, request.limit).await?;
    let mut run = Run {
        queues,
        op,
        request,
        owner: uuid::Uuid::new_v4().to_string(),
        snapshot: HashSet::new(),
        sent: Vec::new(),
        report: ReplayReport {
            replay_id: request.replay_id.clone(),
            stage: request.stage,
            dry_run: request.dry_run,
            messages: Vec::new(),
            sent: 0,
            already_sent: 0,
            skipped: 0,
            busy: 0,
            not_sent: 0,
            came_back: 0,
            halted: None,
        },
    };
    let result = run.go(&scan.held, scan.complete).await;
    scan.close().await;
    result?;
    run.report.count();
    Ok(run.report)
}

/// One message sent, watched for coming back.
struct Sent {
    /// Index into the report's messages.
    index: usize,
    id: String,
    order: Option<OrderId>,
    /// The order's version before the send (`None`: no such order yet).
    version_before: Option<u64>,
}

struct Run<'a> {
    queues: &'a ExceptionQueues,
    op: &'a Operator<'a>,
    request: &'a ReplayRequest,
    /// This run's claim token.
    owner: String,
    /// Ids in the exception queues when the run began.
    snapshot: HashSet<String>,
    sent: Vec<Sent>,
    report: ReplayReport,
}

impl Run<'_> {
    async fn go(&mut self, held: &[Held], complete: bool) -> Result<(), Error> {
        let selected = self.select(held, complete).await?;
        for (i, h) in held.iter().enumerate() {
            if !selected.contains(&i) {
                h.taken.release().await?;
            }
        }
        if self.request.dry_run {
            for &i in &selected {
                let entry = self.planned(&held[i]).await?;
                self.report.messages.push(entry);
            }
            return Ok(());
        }
        self.snapshot = held.iter().map(|h| h.message.id.clone()).collect();
        for stage in Stage::ALL.into_iter().filter(|s| *s != self.request.stage) {
            for b in self.queues.browse(stage, WATCH_LIMIT).await? {
                let m = b.message;
                self.snapshot
                    .insert(super::message::message_id(m.meta(), m.body()));
            }
        }
        self.send(held, &selected).await;
        Ok(())
    }

    /// The indices of the selected messages, in queue order. Ids not in
    /// the queue are an error unless this replay id sent them already.
    async fn select(&mut self, held: &[Held], complete: bool) -> Result<Vec<usize>, Error> {
        let matches = |h: &Held| match &self.request.selection {
            Selection::Ids(ids) => ids.contains(&h.message.id),
            Selection::Reason(reason) => &h.message.reason == reason,
            Selection::All => true,
        };
        let selected: Vec<usize> = (0..held.len()).filter(|&i| matches(&held[i])).collect();
        let Selection::Ids(ids) = &self.request.selection else {
            return Ok(selected);
        };
        let mut missing = Vec::new();
        for id in ids {
            if held.iter().any(|h| &h.message.id == id) {
                continue;
            }
            if !self.request.dry_run
                && let Some(outcome) = self.sent_before(id).await?
            {
                self.report.messages.push(ReplayedMessage {
                    id: id.clone(),
                    order_id: None,
                    reason: String::new(),
                    kind: BodyKind::Unreadable,
                    destination: None,
                    outcome,
                    detail: Some("not in the queue: this replay id handled it before".into()),
                    prediction: None,
                    audit: None,
                });
                continue;
            }
            missing.push(id.clone());
        }
        if missing.is_empty() {
            Ok(selected)
        } else {
            let read = held.len();
            let queue = self.queues.queue(self.request.stage);
            Err(Error::NotFound {
                queue: if complete {
                    queue
                } else {
                    format!("the first {read} messages of {queue}")
                },
                ids: missing,
                read,
            })
        }
    }

    /// For an id not in the queue: did this replay id send it (or is it
    /// sending it now)?
    async fn sent_before(&self, id: &str) -> Result<Option<ReplayOutcome>, Error> {
        let store = self.op.store;
        let rid = &self.request.replay_id;
        Ok(
            match store.claim_replay(rid, id, &self.owner, CLAIM_TTL).await? {
                ReplayClaim::Sent { .. } => Some(ReplayOutcome::AlreadySent),
                ReplayClaim::Busy { .. } => Some(ReplayOutcome::Busy),
                ReplayClaim::Claimed => {
                    store.release_replay(rid, id, &self.owner).await?;
                    None
                }
            },
        )
    }

    fn entry(&self, h: &Held, outcome: ReplayOutcome) -> ReplayedMessage {
        let names = self.queues.names();
        ReplayedMessage {
            id: h.message.id.clone(),
            order_id: h.message.order_id.clone(),
            reason: h.message.reason.clone(),
            kind: h.message.kind,
            destination: destination(names, self.request.stage, h.message.kind)
                .map(|d| d.to_string()),
            outcome,
            detail: None,
            prediction: None,
            audit: None,
        }
    }

    async fn planned(&self, h: &Held) -> Result<ReplayedMessage, Error> {
        let mut entry = self.entry(h, ReplayOutcome::Planned);
        if let Some(problems) = refusal(self.request.stage, h, self.op.policy) {
            entry.outcome = ReplayOutcome::Skipped;
            entry.detail = Some(problems);
        }
        entry.prediction = Some(self.predict(h).await?);
        Ok(entry)
    }

    /// Sends the selected messages. Nothing here fails the whole replay:
    /// what was sent is in the report, and a failure halts it.
    async fn send(&mut self, held: &[Held], selected: &[usize]) {
        let limiter = self
            .request
            .rate
            .map(|rate| RateLimiter::direct(Quota::per_second(rate)));
        let canary = self.request.canary.min(selected.len());
        let mut canary_pending = canary > 0;
        let mut last_check = Instant::now();
        for (n, &i) in selected.iter().enumerate() {
            if self.report.halted.is_none() && canary_pending && n == canary {
                canary_pending = false;
                self.report.halted = failed_as_halt(self.wait_for_canary().await);
            }
            if self.report.halted.is_none() && last_check.elapsed() >= CHECK_EVERY {
                last_check = Instant::now();
                self.report.halted = failed_as_halt(self.check_came_back().await);
            }
            if self.report.halted.is_some() {
                let entry = self.entry(&held[i], ReplayOutcome::NotSent);
                self.report.messages.push(entry);
                continue;
            }
            if let Some(limiter) = &limiter {
                limiter.until_ready().await;
            }
            match self.send_one(&held[i]).await {
                Ok(entry) => self.report.messages.push(entry),
                Err(err) => {
                    let mut entry = self.entry(&held[i], ReplayOutcome::NotSent);
                    entry.detail = Some(err.to_string());
                    self.report.messages.push(entry);
                    self.report.halted = failed_as_halt(Err(err));
                }
            }
        }
        if self.report.halted.is_none() && canary_pending {
            self.report.halted = failed_as_halt(self.wait_for_canary().await);
        } else if self.report.halted.is_none() {
            // Only marks what came back already; nothing is left to halt.
            self.report.halted = failed_as_halt(self.check_came_back().await.map(|_| None));
        }
    }

    async fn send_one(&mut self, h: &Held) -> Result<ReplayedMessage, Error> {
        let mut entry = self.entry(h, ReplayOutcome::Sent);
        let stage = self.request.stage;
        let names = self.queues.names();
        let destination = match (
            refusal(stage, h, self.op.policy),
            destination(names, stage, h.message.kind),
        ) {
            (None, Some(destination)) => destination,
            (problems, _) => {
                entry.outcome = ReplayOutcome::Skipped;
                entry.detail = Some(problems.unwrap_or_else(|| "unreadable body".into()));
                return Ok(entry);
            }
        };
        let store = self.op.store;
        let (rid, id) = (&self.request.replay_id, &h.message.id);
        match store.claim_replay(rid, id, &self.owner, CLAIM_TTL).await? {
            ReplayClaim::Claimed => {}
            ReplayClaim::Sent { .. } => {
                h.taken.ack().await?;
                entry.outcome = ReplayOutcome::AlreadySent;
                entry.detail = Some(
                    "sent by this replay id before; the copy in the queue was acknowledged".into(),
                );
                return Ok(entry);
            }
            ReplayClaim::Busy { owner } => {
                entry.outcome = ReplayOutcome::Busy;
                entry.detail = Some(format!("another run of this replay id ({owner}) holds it"));
                return Ok(entry);
            }
        }
        let order = h.message.order();
        let version_before = match &order {
            Some(order) => store.get_order(order).await?.map(|o| o.version),
            None => None,
        };
        let copy = replayed_copy(h.taken.message(), id, rid, self.op.policy, &destination);
        if let Err(err) = self.queues.publisher().publish(copy).await {
            store.release_replay(rid, id, &self.owner).await?;
            return Err(self.queues.broker_error(err));
        }
        let queue = self.queues.queue(stage);
        let audit = self
            .op
            .audit(
                &queue,
                Action {
                    event: "operator.replay",
                    message: &h.message,
                    order: None,
                    reason: format!(
                        "replay {rid}: {stage} exception {id} ({}) sent to {destination}",
                        h.message.reason
                    ),
                },
            )
            .await?;
        entry.audit = Some(audit);
        if !store.finish_replay(rid, id, &self.owner, SENT_KEPT).await? {
            entry.detail = Some("its claim ran out before it was marked sent".into());
        }
        h.taken.ack().await?;
        self.sent.push(Sent {
            index: self.report.messages.len(),
            id: id.clone(),
            order,
            version_before,
        });
        Ok(entry)
    }

    /// Marks replayed messages that came back; halts above the threshold.
    async fn check_came_back(&mut self) -> Result<Option<Halt>, Error> {
        let back = self.came_back().await?;
        for &k in &back {
            self.report.messages[self.sent[k].index].outcome = ReplayOutcome::CameBack;
        }
        let (came_back, sent) = (back.len(), self.sent.len());
        Ok(self
            .request
            .halt
            .reached(came_back, sent)
            .then(|| Halt::CameBack {
                came_back,
                sent,
                threshold: self.request.halt.to_string(),
            }))
    }

    /// Indices into `sent` of messages that came back: the same message id
    /// again, or a new exception message for the same order.
    async fn came_back(&self) -> Result<HashSet<usize>, Error> {
        let mut back = HashSet::new();
        if self.sent.is_empty() {
            return Ok(back);
        }
        for stage in Stage::ALL {
            for b in self.queues.browse(stage, WATCH_LIMIT).await? {
                let m = &b.message;
                let id = super::message::message_id(m.meta(), m.body());
                let order = m
                    .meta()
                    .order_id
                    .clone()
                    .or_else(|| super::message::body_order_id(m.body()));
                for (k, sent) in self.sent.iter().enumerate() {
                    let same_order = order.is_some()
                        && order.as_deref() == sent.order.as_ref().map(OrderId::as_str);
                    if sent.id == id || (same_order && !self.snapshot.contains(&id)) {
                        back.insert(k);
                    }
                }
            }
        }
        Ok(back)
    }

    /// Waits until every canary's order has moved (and none came back), or
    /// the wait runs out.
    async fn wait_for_canary(&mut self) -> Result<Option<Halt>, Error> {
        let started = Instant::now();
        loop {
            let back = self.came_back().await?;
            if !back.is_empty() {
                let mut ids = Vec::new();
                for &k in &back {
                    self.report.messages[self.sent[k].index].outcome = ReplayOutcome::CameBack;
                    ids.push(self.sent[k].id.clone());
                }
                ids.sort();
                return Ok(Some(Halt::CanaryCameBack { ids }));
            }
            let mut unsettled = Vec::new();
            for sent in &self.sent {
                let now = match &sent.order {
                    Some(order) => self.op.store.get_order(order).await?,
                    None => continue,
                };
                if now.as_ref().map(|o| o.version) == sent.version_before {
                    let state =
                        now.map_or_else(|| "no such order".to_owned(), |o| o.state.to_string());
                    unsettled.push((sent.id.clone(), state));
                }
            }
            if unsettled.is_empty() {
                return Ok(None);
            }
            let waited = started.elapsed();
            if waited >= self.request.canary_timeout {
                return Ok(Some(Halt::CanaryUnsettled {
                    ids: unsettled.iter().map(|(id, _)| id.clone()).collect(),
                    waited_secs: waited.as_secs(),
                    states: unsettled
                        .into_iter()
                        .map(|(id, state)| format!("{id}: {state}"))
                        .collect(),
                }));
            }
            tokio::time::sleep(CANARY_POLL).await;
        }
    }

    async fn predict(&self, h: &Held) -> Result<Prediction, Error> {
        let stage = self.request.stage;
        let store = self.op.store;
        let order = match h.message.order() {
            Some(id) => store.get_order(&id).await?,
            None => None,
        };
        let attempts = match &order {
            Some(o) => store.attempts(&o.order_id, stage).await?,
            None => 0,
        };
        Ok(predict(
            self.op.policy,
            stage,
            h,
            order.as_ref(),
            attempts,
            jiff::Timestamp::now(),
        ))
    }
}

/// A halt, or — when looking failed — a halt for that failure.
fn failed_as_halt(checked: Result<Option<Halt>, Error>) -> Option<Halt> {
    checked.unwrap_or_else(|err| {
        Some(Halt::Failed {
            error: err.to_string(),
        })
    })
}

/// Where a replayed message goes.
enum Destination {
    Queue(String),
    Ingress {
        exchange: String,
        routing_key: &'static str,
    },
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Queue(queue) => write!(f, "queue {queue}"),
            Destination::Ingress {
                exchange,
                routing_key,
            } => write!(f, "exchange {exchange}, key {routing_key}"),
        }
    }
}

fn destination(names: &Names, stage: Stage, kind: BodyKind) -> Option<Destination> {
    let ingress = |routing_key| Destination::Ingress {
        exchange: names.orders_exchange(),
        routing_key,
    };
    match kind {
        BodyKind::Step => Some(Destination::Queue(names.work_queue(stage))),
        BodyKind::OrderPlaced => Some(ingress(ORDER_PLACED)),
        BodyKind::OrderCancel => Some(ingress(ORDER_CANCEL)),
        BodyKind::Unreadable => None,
    }
}

/// The problems of a body that would only come back as malformed.
/// Why a held message is not sent back as it is, if it is not.
fn refusal(stage: Stage, h: &Held, policy: &Policy) -> Option<String> {
    still_invalid(stage, h).or_else(|| past_replay_window(h, policy, jiff::Timestamp::now()))
}

/// A step first attempted longer than `exceptions.replay_window` ago: the
/// downstream may have forgotten the step's idempotency key by now, so
/// running it again could repeat its side effect (a second charge). The
/// first attempt counts, not the parking: the key was first sent then.
pub(super) fn past_replay_window(
    h: &Held,
    policy: &Policy,
    now: jiff::Timestamp,
) -> Option<String> {
    if h.message.kind != BodyKind::Step {
        return None;
    }
    let first_ms = first_attempt_ms(h.taken.message().meta())?;
    let age_ms = u64::try_from(now.as_millisecond().saturating_sub(first_ms)).ok()?;
    let window = policy.exceptions.replay_window;
    if u128::from(age_ms) <= window.as_millis() {
        return None;
    }
    let age = humantime::format_duration(Duration::from_secs(age_ms / 1000));
    Some(format!(
        "first attempted {age} ago, past exceptions.replay_window ({}): the downstream may have forgotten this step's idempotency key, so running it again could repeat its side effect; settle the order by hand (`orderctl order resolve`) and discard this message",
        humantime::format_duration(window)
    ))
}

/// When the message's step was first attempted (epoch ms): its
/// `orderflow-first-attempt-at`, else — a step parked on its first run —
/// when it was sent.
pub(super) fn first_attempt_ms(meta: &Meta) -> Option<i64> {
    meta.first_attempt_at.or_else(|| {
        let secs = i64::try_from(meta.timestamp?).ok()?;
        secs.checked_mul(1000)
    })
}

fn still_invalid(stage: Stage, h: &Held) -> Option<String> {
    let body = h.taken.message().body();
    let problems = match h.message.kind {
        BodyKind::Step => StepMessage::parse(body, stage).err()?.problems,
        _ => parse_inbound(body).err()?.problems,
    };
    Some(format!(
        "still invalid, fix it with `exceptions edit`: {}",
        problems_text(&problems)
    ))
}

fn problems_text(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The copy a replay sends: the original's body, id and first attempt,
/// attempt count reset, the exception's own headers dropped, the replay id
/// added. Keeping the first attempt keeps the replay window (and the
/// stage's windows) measured from it: a copy parked again carries it on.
fn replayed_copy(
    message: &Incoming,
    id: &str,
    replay_id: &str,
    policy: &Policy,
    destination: &Destination,
) -> Outgoing {
    let mut meta = message.meta().clone();
    meta.message_id = Some(id.to_owned());
    meta.attempt = Some(1);
    meta.first_attempt_at = first_attempt_ms(message.meta());
    meta.reason = None;
    meta.class = None;
    meta.certainty = None;
    meta.last_error = None;
    meta.extra.remove(VALIDATION_ERRORS_HEADER);
    meta.timestamp = u64::try_from(jiff::Timestamp::now().as_second()).ok();
    let meta = meta
        .with_policy_id(&policy.id())
        .with_extra(REPLAY_ID_HEADER, replay_id);
    let body = message.body().to_vec();
    match destination {
        Destination::Queue(queue) => Outgoing::to_queue(queue, body, meta),
        Destination::Ingress {
            exchange,
            routing_key,
        } => Outgoing {
            exchange: exchange.clone(),
            routing_key: (*routing_key).to_owned(),
            body,
            meta,
        },
    }
}

/// What the stage does with the held message for `order` now: its own
/// route and decision ([`orderflow_stages::foresee`]) on the order as it
/// is, with the order's earlier runs of the stage (`attempts`: the replay
/// resets the message's count, not the order's) and — when the message
/// says how the downstream answered — that answer assumed again.
fn predict(
    policy: &Policy,
    stage: Stage,
    h: &Held,
    order: Option<&OrderRecord>,
    attempts: u32,
    now: jiff::Timestamp,
) -> Prediction {
    let body = h.taken.message().body();
    let mut prediction = Prediction {
        order_state: order.map(|o| o.state),
        stage_will: String::new(),
        policy: None,
    };
    if h.message.kind == BodyKind::Step
        && let Err(invalid) = StepMessage::parse(body, stage)
    {
        prediction.stage_will = format!(
            "parks it again as malformed: {}",
            problems_text(&invalid.problems)
        );
        return prediction;
    }
    let order = match (h.message.kind, order) {
        (BodyKind::Step, None) => {
            prediction.stage_will =
                "parks it again as order_not_found: the store has no such order".into();
            return prediction;
        }
        (BodyKind::Step, Some(order)) => order.clone(),
        (_, order) => match entered(body, order) {
            Ok(order) => order,
            Err(will) => {
                prediction.stage_will = will;
                return prediction;
            }
        },
    };
    let shape = Shape::of(stage);
    let job = Job {
        message_id: h.message.id.clone(),
        correlation_id: order.correlation_id.clone(),
        meta: h.taken.message().meta().clone(),
        runs: attempts + 1,
        first_attempt_at_ms: first_attempt_ms(h.taken.message().meta())
            .unwrap_or(now.as_millisecond()),
        elapsed: first_attempt_ms(h.taken.message().meta())
            .and_then(|ms| u64::try_from(now.as_millisecond().saturating_sub(ms)).ok())
            .map_or(Duration::ZERO, Duration::from_millis),
        body: body.to_vec(),
        reruns: 0,
    };
    let answer = match (h.message.class, h.message.certainty) {
        (Some(class), Some(certainty)) => Some(Outcome::new(class, certainty)),
        _ => None,
    };
    let foresight = foresee(shape, policy, &order, &job, answer.as_ref());
    prediction.stage_will = foresight.describe(stage, &order);
    let decided = match &foresight {
        Foresight::Applies {
            ruling: Some(ruling),
            ctx: Some(ctx),
            ..
        } => Some((ruling.clone(), (**ctx).clone(), true)),
        // The stage does not run the order's work: say what the policy
        // makes of the outcome today, had it run.
        Foresight::Absorbs | Foresight::Tracks => answer.as_ref().map(|answer| {
            let ctx = shape.context(policy, &order, &job);
            let start = shape.start(policy, &order, &job);
            let (ruling, ctx) = resolve_on(policy, ctx, start, answer);
            (ruling, ctx, false)
        }),
        _ => None,
    };
    prediction.policy = decided
        .filter(|_| answer.is_some())
        .map(|(ruling, ctx, applies)| PolicyDecision {
            applies,
            decision: ruling.decision,
            rule: ruling.rule,
            policy_id: policy.id().to_string(),
            given: format!(
                "{}/{}, {} earlier runs, {} in {}",
                ctx.outcome.class,
                ctx.outcome.certainty,
                ctx.deferrals,
                humanize(ctx.elapsed),
                order.state
            ),
        });
    prediction
}

/// The order a producer's message meets once the inventory stage has
/// entered it (`ingress`): created from an `order.placed`, or with the
/// cancellation recorded — or, when it enters nothing, what happens to it.
fn entered(body: &[u8], order: Option<&OrderRecord>) -> Result<OrderRecord, String> {
    use orderflow_core::message::Inbound;
    let inbound = parse_inbound(body).map_err(|invalid| {
        format!(
            "parks it again as malformed: {}",
            problems_text(&invalid.problems)
        )
    })?;
    match (inbound, order) {
        (Inbound::Placed(placed), None) => Err(format!(
            "creates order {} (received) and reserves its stock",
            placed.order_id
        )),
        (Inbound::Placed(placed), Some(order)) => {
            let same = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .as_ref()
                == Some(&order.body);
            if same {
                Ok(order.clone())
            } else {
                Err(format!(
                    "refuses it again as order_id_conflict: order {} exists with another body; edit its order_id or discard it",
                    placed.order_id
                ))
            }
        }
        (Inbound::Cancel(cancel), None) => Err(format!(
            "keeps it until order {} arrives (no such order yet); parked again as cancel_unknown_order if it has not arrived within exceptions.replay_window",
            cancel.order_id
        )),
        (Inbound::Cancel(cancel), Some(order)) => {
            let mut order = order.clone();
            order.cancel_requested.get_or_insert(cancel.reason);
            Ok(order)
        }
    }
}

fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halt_thresholds_are_counts_or_shares() {
        assert_eq!("3".parse(), Ok(HaltThreshold::Count(3)));
        assert_eq!("10%".parse(), Ok(HaltThreshold::Ratio(0.1)));
        assert_eq!("0.25".parse(), Ok(HaltThreshold::Ratio(0.25)));
        for bad in ["0", "0%", "150%", "1.5", "-1", "x"] {
            assert!(bad.parse::<HaltThreshold>().is_err(), "{bad}");
        }
        assert!(HaltThreshold::Count(2).reached(2, 10));
        assert!(!HaltThreshold::Count(2).reached(1, 1));
        assert!(!HaltThreshold::Ratio(0.1).reached(1, 10));
        assert!(HaltThreshold::Ratio(0.1).reached(2, 10));
        assert!(!HaltThreshold::Ratio(0.1).reached(0, 0));
    }

    #[test]
    fn replay_ids_are_fresh_and_storable() {
        let (a, b) = (new_replay_id(), new_replay_id());
        assert_ne!(a, b);
        assert!(a.starts_with("r-") && a.len() <= 128);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
    }
}
