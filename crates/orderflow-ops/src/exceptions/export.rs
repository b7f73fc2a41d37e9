//! `exceptions export` and `import`.
//!
//! Export drains a queue into a JSONL file, one message at a time: take it,
//! write its line, sync the file, then acknowledge it. Killed anywhere, a
//! message is either still in the queue (not yet acknowledged) or in the
//! file (synced before the ack), and possibly both; so a rerun first reads
//! the file — dropping a last line cut short — and acknowledges, without
//! writing it again, each message whose id and body the file already holds.
//!
//! One export writes a file at a time: each holds an exclusive lock on it
//! (advisory, `flock`) from opening it to its last ack, and an export that
//! finds the file locked takes nothing from the queue and says so. Two
//! exports writing one file would write over each other's lines while each
//! acknowledged its own messages. The lock goes with the open file, so a
//! killed export leaves none behind and its rerun continues the file.
//!
//! Import publishes every line back to its stage's exception queue in the
//! current namespace, with its exact properties, headers and body, each
//! confirmed by the broker. Lines whose message is already in the queue
//! are skipped, so an import can be rerun too. It reads the file under a
//! shared lock: never one an export is still writing.
//!
//! Both are audited: each exported message on its order (as a discard is,
//! just before its ack: it leaves the queue then), an import once in the
//! fleet's audit stream (the file says which messages).

use super::audit::Action;
use super::message::ExceptionMessage;
use super::record::{Identity, Record};
use super::{Error, ExceptionQueues, Operator};
use orderflow_broker::admin::RawPublisher;
use orderflow_core::Stage;
use orderflow_store::FleetNote;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// What `export` did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub stage: Stage,
    pub path: String,
    /// Lines written (and their messages acknowledged) by this run.
    pub written: usize,
    /// Messages found already in the file (an earlier run was stopped
    /// between its write and its ack): acknowledged, not written again.
    pub already_in_file: usize,
    /// Lines in the file now.
    pub lines: usize,
    /// A last line cut short by an earlier run was dropped (its message was
    /// never acknowledged, so it was exported again).
    pub dropped_partial_line: bool,
}

/// What `import` did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub path: String,
    pub lines: usize,
    pub published: usize,
    /// Lines whose message is in its queue already (or repeats an earlier
    /// line): not published again.
    pub already_in_queue: usize,
    pub by_stage: BTreeMap<Stage, usize>,
}

/// Moves the stage's exception messages into `path` (appending), at most
/// `limit` of them.
pub async fn export(
    queues: &ExceptionQueues,
    op: &Operator<'_>,
    stage: Stage,
    path: &Path,
    limit: Option<usize>,
) -> Result<ExportReport, Error> {
    op.audit_actor()?;
    let (mut file, mut known, dropped_partial_line) = open_for_export(path)?;
    let mut lines = known.len();
    let mut report = ExportReport {
        stage,
        path: path.display().to_string(),
        written: 0,
        already_in_file: 0,
        lines,
        dropped_partial_line,
    };
    let cursor = orderflow_broker::admin::Cursor::open(queues.connection(), &queues.queue(stage))
        .await
        .map_err(|e| queues.broker_error(e))?;
    let result = async {
        while limit.is_none_or(|limit| report.written + report.already_in_file < limit) {
            let Some(taken) = cursor.next().await.map_err(|e| queues.broker_error(e))? else {
                break;
            };
            let message = taken.message();
            let id = super::message::message_id(message.meta(), message.body());
            let record = Record::new(stage, &id, message.body(), taken.properties());
            let identity = record.identity();
            if known.contains(&identity) {
                report.already_in_file += 1;
            } else {
                let mut line = record.to_line();
                line.push('\n');
                file.write_all(line.as_bytes())
                    .and_then(|()| file.sync_data())
                    .map_err(Error::file(path))?;
                known.insert(identity);
                lines += 1;
                report.written += 1;
            }
            let parked = ExceptionMessage::read(stage, message, jiff::Timestamp::now());
            let action = Action {
                event: "operator.export",
                message: &parked,
                order: None,
                reason: format!("moved to {}", path.display()),
            };
            op.audit(&queues.queue(stage), action).await?;
            taken.ack().await?;
        }
        Ok(())
    }
    .await;
    cursor.close().await;
    report.lines = lines;
    result.map(|()| report)
}

/// Opens (or creates) the export file for appending: reads the identities
/// of its lines and drops a last line cut short.
fn open_for_export(path: &Path) -> Result<(File, HashSet<Identity>, bool), Error> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(Error::file(path))?;
    lock(&file, path, Lock::Exclusive)?;
    // Whoever created the file (this export, or a caller that creates
    // each export's file itself), its directory entry is durable before
    // any message is acknowledged.
    sync_parent(path)?;
    let mut content = Vec::new();
    file.read_to_end(&mut content).map_err(Error::file(path))?;
    let complete = content
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let dropped = complete < content.len();
    if dropped {
        file.set_len(complete as u64)
            .and_then(|()| file.sync_data())
            .map_err(Error::file(path))?;
    }
    file.seek(SeekFrom::Start(complete as u64))
        .map_err(Error::file(path))?;
    let text = String::from_utf8_lossy(&content[..complete]);
    let mut known = HashSet::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match Record::parse(line) {
            Ok(record) => {
                known.insert(record.identity());
            }
            Err(problem) => problems.push(format!("line {}: {problem}", n + 1)),
        }
    }
    if !problems.is_empty() {
        problems.push("export appends to a file of exported messages only: name a new file".into());
        return Err(Error::BadFile {
            path: path.display().to_string(),
            problems,
        });
    }
    Ok((file, known, dropped))
}

/// How a file of exported messages is held.
enum Lock {
    /// An export writing it.
    Exclusive,
    /// An import reading it: never while an export writes it.
    Shared,
}

/// Takes the lock at once or refuses: waiting could leave an operator's
/// command (or a console page) hanging behind an export of thousands.
fn lock(file: &File, path: &Path, kind: Lock) -> Result<(), Error> {
    let taken = match kind {
        Lock::Exclusive => file.try_lock(),
        Lock::Shared => file.try_lock_shared(),
    };
    match taken {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(Error::FileInUse {
            path: path.display().to_string(),
        }),
        Err(TryLockError::Error(err)) => Err(Error::file(path)(err)),
    }
}

/// The bytes of a file of exported messages, read under a shared lock:
/// never while an export still writes it (a copy taken then would miss
/// the lines still to come, and could end in half a line).
pub fn read_exported(path: &Path) -> Result<Vec<u8>, Error> {
    let mut file = File::open(path).map_err(Error::file(path))?;
    lock(&file, path, Lock::Shared)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(Error::file(path))?;
    Ok(bytes)
}

/// Makes the file's directory entry durable too.
fn sync_parent(path: &Path) -> Result<(), Error> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(Error::file(parent))
}

/// Publishes every line of `path` back to its stage's exception queue.
/// Every line is checked before anything is published.
pub async fn import(
    queues: &ExceptionQueues,
    op: &Operator<'_>,
    path: &Path,
) -> Result<ImportReport, Error> {
    let actor = op.audit_actor()?;
    let text = String::from_utf8(read_exported(path)?).map_err(|err| {
        Error::file(path)(std::io::Error::new(std::io::ErrorKind::InvalidData, err))
    })?;
    let mut records = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match Record::parse(line) {
            Ok(record) => records.push(record),
            Err(problem) => problems.push(format!("line {}: {problem}", n + 1)),
        }
    }
    if !problems.is_empty() {
        return Err(Error::BadFile {
            path: path.display().to_string(),
            problems,
        });
    }
    let mut present: HashSet<Identity> = HashSet::new();
    let stages: HashSet<Stage> = records.iter().map(|r| r.stage).collect();
    for stage in stages {
        let depth = queues.depth(stage).await?;
        let limit = usize::try_from(depth)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        for browsed in queues.browse(stage, limit).await? {
            let message = &browsed.message;
            let id = super::message::message_id(message.meta(), message.body());
            present.insert(Record::new(stage, &id, message.body(), &browsed.properties).identity());
        }
    }
    let mut report = ImportReport {
        path: path.display().to_string(),
        lines: records.len(),
        published: 0,
        already_in_queue: 0,
        by_stage: BTreeMap::new(),
    };
    let mut publisher = RawPublisher::open(queues.connection()).await?;
    let result = async {
        for record in &records {
            if !present.insert(record.identity()) {
                report.already_in_queue += 1;
                continue;
            }
            let body = record.body_bytes().map_err(Error::Invalid)?;
            let properties = record.raw_properties()?;
            publisher
                .publish("", &queues.queue(record.stage), &body, &properties)
                .await
                .map_err(|e| queues.broker_error(e))?;
            report.published += 1;
            *report.by_stage.entry(record.stage).or_default() += 1;
        }
        Ok(())
    }
    .await;
    publisher.close().await;
    if report.published > 0 {
        let stages: Vec<String> = report
            .by_stage
            .iter()
            .map(|(stage, n)| format!("{n} to {stage}"))
            .collect();
        op.store
            .fleet_note(&FleetNote {
                event: "operator.import".to_owned(),
                subject: format!("exceptions import of {}", report.path),
                reason: Some(format!(
                    "{} of {} lines published ({})",
                    report.published,
                    report.lines,
                    stages.join(", ")
                )),
                actor,
                correlation_id: report.path.clone(),
                policy_id: op.policy.id(),
            })
            .await?;
    }
    result.map(|()| report)
}
