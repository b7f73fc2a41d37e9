//! The fleet at a glance: per stage the work queue, its delay tiers and its
//! exception queue, whether it is paused; orders by state; per downstream
//! its retry budget and the breakers of the workers calling it; the live
//! workers and the policies they run, with a loud warning when more than
//! one policy is live; the RabbitMQ nodes and the work queues' replicas
//! ([`crate::brokers`]); the Redis under it all ([`crate::redis_status`]).

use crate::brokers::{BrokerStatus, broker_status};
use crate::error::{Error, Result};
use crate::redis_status::{self, RedisStatus};
use crate::target::Target;
use jiff::Timestamp;
use orderflow_broker::admin::{self, QueueStats};
use orderflow_broker::{Connection, Error as BrokerError};
use orderflow_core::decide::BreakerState;
use orderflow_core::{OrderState, Stage};
use orderflow_store::{LiveWorker, StagePause};
use serde::Serialize;
use std::collections::BTreeMap;

/// What [`status`] looks at besides the counts.
#[derive(Debug, Clone, Copy)]
pub struct StatusOptions {
    /// Exception messages read (and left in place) per stage to count
    /// them by reason; 0 reads none.
    pub exception_sample: usize,
}

impl Default for StatusOptions {
    fn default() -> StatusOptions {
        StatusOptions {
            exception_sample: 100,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub namespace: String,
    /// The policy delay tiers and budgets were read with.
    pub policy_id: String,
    pub stages: Vec<StageStatus>,
    /// Orders per state, from the state index.
    pub orders: BTreeMap<OrderState, u64>,
    /// Per state a stage works on: orders there longer than that stage's
    /// `deadline` (the reconciler escalates them as `stuck`).
    pub overdue: BTreeMap<OrderState, u64>,
    pub downstreams: Vec<DownstreamStatus>,
    pub workers: Vec<WorkerStatus>,
    /// Each policy id live workers report, with the workers running it.
    pub policies: BTreeMap<String, Vec<String>>,
    /// More than one policy is live: the fleet decides by mixed rules.
    pub policy_drift: bool,
    /// The RabbitMQ nodes and where each work queue's replicas are.
    pub broker: BrokerStatus,
    /// One Redis, or the Redis Cluster's masters, slots and replicas.
    pub redis: RedisStatus,
    /// What needs a look, most important first.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageStatus {
    pub stage: Stage,
    pub paused: Option<Pause>,
    /// `None`: the queue does not exist (no worker ever declared it).
    pub work: Option<QueueView>,
    pub delays: Vec<DelayView>,
    pub exceptions: Option<ExceptionsView>,
    /// Live workers of this stage.
    pub workers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pause {
    pub reason: String,
    pub actor: String,
    pub since: Timestamp,
}

impl From<StagePause> for Pause {
    fn from(pause: StagePause) -> Pause {
        Pause {
            reason: pause.reason,
            actor: pause.actor,
            since: pause.since,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueView {
    pub queue: String,
    /// Ready messages (not those delivered and unacknowledged).
    pub messages: u32,
    pub consumers: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct DelayView {
    /// The tier, e.g. `30s`.
    pub delay: String,
    pub queue: String,
    /// `None`: the queue does not exist.
    pub messages: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExceptionsView {
    pub queue: String,
    pub messages: u32,
    /// Of the `sampled` messages at the head of the queue, how many carry
    /// each reason (`orderflow-reason`).
    pub by_reason: BTreeMap<String, u32>,
    pub sampled: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct DownstreamStatus {
    pub downstream: Stage,
    /// Retries the fleet may still make in the budget's window.
    pub retry_budget_left: u64,
    /// How many live workers see its breaker in each state (`closed`,
    /// `half_open`, `open`).
    pub breakers: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    pub actor: String,
    pub role: String,
    pub policy_id: String,
    pub started_at: Timestamp,
    pub seen_at: Timestamp,
    /// It has stopped taking deliveries because its stage is paused.
    pub paused: bool,
    pub breakers: BTreeMap<Stage, BreakerState>,
}

impl From<LiveWorker> for WorkerStatus {
    fn from(worker: LiveWorker) -> WorkerStatus {
        let beat = worker.heartbeat;
        WorkerStatus {
            actor: beat.actor,
            role: beat.role,
            policy_id: beat.policy_id,
            started_at: beat.started_at,
            seen_at: worker.seen_at,
            paused: beat.paused,
            breakers: beat.breakers,
        }
    }
}

/// Reads the fleet's state. Exception messages sampled for their reasons
/// are left in their queue.
pub async fn status(target: &Target, options: StatusOptions) -> Result<Status> {
    let store = target.store();
    let redis = redis_status::read(store).await?;
    let read = |what: &str| Error::store(format!("cannot read {what}"));
    let orders = store
        .count_by_state()
        .await
        .map_err(read("orders by state"))?;
    let mut overdue = BTreeMap::new();
    let now = jiff::Timestamp::now();
    for state in OrderState::ALL {
        let Some(stage) = state.owner() else { continue };
        let deadline = target.policy().stage(stage).deadline;
        let cutoff = jiff::SignedDuration::try_from(deadline)
            .ok()
            .and_then(|deadline| now.checked_sub(deadline).ok())
            .unwrap_or(jiff::Timestamp::MIN);
        let count = store
            .count_in_state_entered_before(state, cutoff)
            .await
            .map_err(read("orders by state"))?;
        overdue.insert(state, count);
    }
    let paused = store.paused_stages().await.map_err(read("paused stages"))?;
    let workers: Vec<WorkerStatus> = store
        .live_workers()
        .await
        .map_err(read("worker heartbeats"))?
        .into_iter()
        .map(WorkerStatus::from)
        .collect();
    let mut downstreams = Vec::new();
    for stage in Stage::ALL {
        let budget = store
            .budget_left(stage, &target.policy().downstream(stage).budget)
            .await
            .map_err(read("retry budgets"))?;
        let mut breakers = BTreeMap::new();
        for worker in &workers {
            if let Some(state) = worker.breakers.get(&stage) {
                *breakers.entry(breaker_name(*state).to_owned()).or_insert(0) += 1;
            }
        }
        downstreams.push(DownstreamStatus {
            downstream: stage,
            retry_budget_left: budget.left,
            breakers,
        });
    }

    let connection = target.broker().await?;
    let stages = read_queues(target, &connection, &paused, &workers, options).await;
    orderflow_broker::close(&connection, "status read").await;
    let stages = stages?;
    let work_queues: Vec<String> = Stage::ALL
        .iter()
        .map(|&stage| target.spec().stage(stage).work.clone())
        .collect();
    let broker = broker_status(target.amqp_url(), &work_queues).await;

    let mut policies: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for worker in &workers {
        policies
            .entry(worker.policy_id.clone())
            .or_default()
            .push(worker.actor.clone());
    }
    let mut status = Status {
        namespace: target.namespace().to_owned(),
        policy_id: target.policy_id().to_string(),
        stages,
        orders,
        overdue,
        downstreams,
        policy_drift: policies.len() > 1,
        policies,
        workers,
        broker,
        redis,
        warnings: Vec::new(),
    };
    status.warnings = warnings(&status);
    status
        .warnings
        .extend(redis_status::warnings(&status.redis));
    if let Some(hint) = target.empty_namespace_hint().await {
        status.warnings.push(hint);
    }
    Ok(status)
}

async fn read_queues(
    target: &Target,
    connection: &Connection,
    paused: &BTreeMap<Stage, StagePause>,
    workers: &[WorkerStatus],
    options: StatusOptions,
) -> Result<Vec<StageStatus>> {
    let mut stages = Vec::new();
    for stage in Stage::ALL {
        let queues = target.spec().stage(stage);
        let work = stats(connection, &queues.work).await?.map(|s| QueueView {
            queue: queues.work.clone(),
            messages: s.messages,
            consumers: s.consumers,
        });
        let mut delays = Vec::new();
        for delay in &queues.delays {
            delays.push(DelayView {
                delay: humantime::format_duration(delay.delay)
                    .to_string()
                    .replace(' ', ""),
                queue: delay.queue.clone(),
                messages: stats(connection, &delay.queue).await?.map(|s| s.messages),
            });
        }
        let exceptions = match stats(connection, &queues.exceptions).await? {
            None => None,
            Some(s) => {
                let sample = if options.exception_sample == 0 || s.messages == 0 {
                    Vec::new()
                } else {
                    admin::peek(connection, &queues.exceptions, options.exception_sample)
                        .await
                        .map_err(Error::broker(format!(
                            "cannot look into `{}`",
                            queues.exceptions
                        )))?
                };
                let mut by_reason = BTreeMap::new();
                for message in &sample {
                    let reason = message
                        .meta()
                        .reason
                        .clone()
                        .unwrap_or_else(|| "(none)".into());
                    *by_reason.entry(reason).or_insert(0) += 1;
                }
                Some(ExceptionsView {
                    queue: queues.exceptions.clone(),
                    messages: s.messages,
                    by_reason,
                    sampled: u32::try_from(sample.len()).unwrap_or(u32::MAX),
                })
            }
        };
        stages.push(StageStatus {
            stage,
            paused: paused.get(&stage).cloned().map(Pause::from),
            work,
            delays,
            exceptions,
            workers: workers.iter().filter(|w| w.role == stage.as_str()).count(),
        });
    }
    Ok(stages)
}

/// The queue's stats; `None` if it does not exist.
async fn stats(connection: &Connection, queue: &str) -> Result<Option<QueueStats>> {
    match admin::queue_stats(connection, queue).await {
        Ok(stats) => Ok(Some(stats)),
        Err(BrokerError::QueueNotFound { .. }) => Ok(None),
        Err(err) => Err(Error::broker(format!("cannot read queue `{queue}`"))(err)),
    }
}

fn warnings(status: &Status) -> Vec<String> {
    let mut warnings = Vec::new();
    if status.policy_drift {
        let live: Vec<String> = status
            .policies
            .iter()
            .map(|(id, actors)| format!("{id} ({})", actors.join(", ")))
            .collect();
        warnings.push(format!(
            "CONFIGURATION DRIFT: {} policies are live at once: {}. Workers decide by different rules; roll every worker onto one policy.",
            status.policies.len(),
            live.join("; ")
        ));
    } else if let Some(live) = status.policies.keys().next()
        && *live != status.policy_id
    {
        warnings.push(format!(
            "the fleet runs policy {live}, but this status was read with {}: delay tiers and budgets may differ; pass the fleet's policy",
            status.policy_id
        ));
    }
    if status.stages.iter().any(|s| s.work.is_none()) {
        warnings.push(format!(
            "queues of namespace `{}` are missing: no worker has started in it (is the namespace right?)",
            status.namespace
        ));
    }
    if status.workers.is_empty() {
        warnings.push(format!(
            "no live workers in namespace `{}` (none has written a heartbeat in the last 15 s)",
            status.namespace
        ));
    }
    for stage in &status.stages {
        let consumers = stage.work.as_ref().map_or(0, |w| w.consumers);
        match &stage.paused {
            Some(_) if consumers > 0 => warnings.push(format!(
                "stage {} is paused, but {consumers} consumer(s) still take deliveries (workers see a pause within seconds; a worker without the pause watch never stops)",
                stage.stage
            )),
            Some(pause) => warnings.push(format!(
                "stage {} is paused since {} by {}: {}",
                stage.stage, pause.since, pause.actor, pause.reason
            )),
            None if stage.workers > 0 && consumers == 0 && stage.work.is_some() => {
                warnings.push(format!(
                    "stage {}: {} live worker(s) but no consumer on its queue",
                    stage.stage, stage.workers
                ));
            }
            None => {}
        }
        if let Some(exceptions) = &stage.exceptions
            && exceptions.messages > 0
        {
            warnings.push(format!(
                "{} message(s) wait in `{}` for a person",
                exceptions.messages, exceptions.queue
            ));
        }
    }
    for downstream in &status.downstreams {
        if let Some(open) = downstream.breakers.get(breaker_name(BreakerState::Open)) {
            warnings.push(format!(
                "the {} breaker is open in {open} worker(s)",
                downstream.downstream
            ));
        }
    }
    warnings.extend(status.broker.warnings());
    for (state, n) in status.overdue.iter().filter(|(_, n)| **n > 0) {
        warnings.push(format!(
            "{n} order(s) {state} for longer than the {} stage's deadline (the reconciler escalates them as `stuck`; is the stage running?)",
            state.owner().map_or("?", Stage::as_str)
        ));
    }
    for state in [OrderState::Escalated, OrderState::Blocked] {
        if let Some(n) = status.orders.get(&state).filter(|n| **n > 0) {
            warnings.push(format!(
                "{n} order(s) {state}: `orderctl order list --state {state}`"
            ));
        }
    }
    warnings
}

/// The breaker state as its JSON name.
pub(crate) fn breaker_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::HalfOpen => "half_open",
        BreakerState::Open => "open",
    }
}
