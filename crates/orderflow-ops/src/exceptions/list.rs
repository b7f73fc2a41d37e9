//! `exceptions list` and `peek`: reading exception queues without
//! consuming them.

use super::message::ExceptionMessage;
use super::reasons::guide;
use super::record::Record;
use super::{DEFAULT_READ_LIMIT, Error, ExceptionQueues};
use orderflow_core::{Certainty, FailureClass, Stage};
use serde::Serialize;
use std::collections::BTreeMap;

/// What `list` found.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub namespace: String,
    pub queues: Vec<QueueScan>,
    /// By stage, then the largest group first.
    pub groups: Vec<Group>,
}

/// How much of one queue was read.
#[derive(Debug, Clone, Serialize)]
pub struct QueueScan {
    pub stage: Stage,
    pub queue: String,
    /// Messages ready when the read began.
    pub depth: u32,
    pub read: usize,
    /// Every message was read (not stopped at the limit).
    pub complete: bool,
}

/// Messages of one stage with the same failure class, certainty and reason.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub stage: Stage,
    pub class: Option<FailureClass>,
    pub certainty: Option<Certainty>,
    pub reason: String,
    pub count: usize,
    /// Age of the oldest message, in seconds (from its AMQP timestamp).
    pub oldest_age_secs: Option<u64>,
    pub oldest_published_at: Option<String>,
    /// The first few orders the messages name.
    pub order_ids: Vec<String>,
    /// The recommended action for this reason (docs/runbook.md).
    pub action: String,
}

/// A message as `peek` shows it: read, and exactly (body and properties).
#[derive(Debug, Clone, Serialize)]
pub struct Peeked {
    pub message: ExceptionMessage,
    pub record: Record,
}

/// Orders named per group, at most.
const SAMPLE_ORDERS: usize = 5;

/// Groups the messages of the stage's queue (or of every stage's), read
/// without consuming, at most `limit` per queue; only `reason` if given.
pub async fn list(
    queues: &ExceptionQueues,
    stage: Option<Stage>,
    reason: Option<&str>,
    limit: usize,
) -> Result<Listing, Error> {
    let stages = stage.map_or_else(|| Stage::ALL.to_vec(), |s| vec![s]);
    let now = jiff::Timestamp::now();
    let mut scans = Vec::new();
    let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
    for stage in stages {
        let depth = queues.depth(stage).await?;
        let browsed = queues.browse(stage, limit).await?;
        scans.push(QueueScan {
            stage,
            queue: queues.queue(stage),
            depth,
            read: browsed.len(),
            complete: browsed.len() < limit,
        });
        for b in &browsed {
            let message = ExceptionMessage::read(stage, &b.message, now);
            if reason.is_some_and(|r| r != message.reason) {
                continue;
            }
            let key = GroupKey {
                stage,
                class: message.class,
                certainty: message.certainty,
                reason: message.reason.clone(),
            };
            let group = groups.entry(key).or_insert_with(|| Group {
                stage,
                class: message.class,
                certainty: message.certainty,
                reason: message.reason.clone(),
                count: 0,
                oldest_age_secs: None,
                oldest_published_at: None,
                order_ids: Vec::new(),
                action: guide(&message.reason).action.to_owned(),
            });
            group.count += 1;
            if message.age_secs > group.oldest_age_secs {
                group.oldest_age_secs = message.age_secs;
                group.oldest_published_at = message.published_at.clone();
            }
            if let Some(order) = &message.order_id
                && group.order_ids.len() < SAMPLE_ORDERS
                && !group.order_ids.contains(order)
            {
                group.order_ids.push(order.clone());
            }
        }
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    groups.sort_by(|a, b| a.stage.cmp(&b.stage).then(b.count.cmp(&a.count)));
    Ok(Listing {
        namespace: queues.names().namespace().to_owned(),
        queues: scans,
        groups,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    stage: Stage,
    class: Option<FailureClass>,
    certainty: Option<Certainty>,
    reason: String,
}

/// The first `n` messages of the stage's queue, body and headers, without
/// consuming them. It reads the whole queue (up to [`DEFAULT_READ_LIMIT`]
/// messages) and shows the first `n`: the broker puts messages returned
/// from a partial read behind the others, so reading only `n` would
/// rotate the queue.
pub async fn peek(queues: &ExceptionQueues, stage: Stage, n: usize) -> Result<Vec<Peeked>, Error> {
    let now = jiff::Timestamp::now();
    Ok(queues
        .browse(stage, n.max(DEFAULT_READ_LIMIT))
        .await?
        .into_iter()
        .take(n)
        .map(|b| {
            let message = ExceptionMessage::read(stage, &b.message, now);
            let record = Record::new(stage, &message.id, b.message.body(), &b.properties);
            Peeked { message, record }
        })
        .collect())
}
