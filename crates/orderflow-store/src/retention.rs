//! Retention: a finished order (delivered, rejected, cancelled) leaves
//! Redis once it has been finished for the policy's
//! `retention.finished_for`, archived first.
//!
//! The store does not archive: the caller takes the order's
//! [`ArchivedOrder`] ([`Store::archive_snapshot`]), writes it to the archive
//! and waits for the confirm, then calls [`Store::expire_archived`], whose
//! one script over the order's keys removes them only if the order is
//! still what was archived (same version, same last audit entry). So a late
//! change between the snapshot and the removal keeps the order, to be
//! archived again; nothing unarchived is ever removed. Orders waiting for a
//! person (blocked, escalated) are never candidates.
//!
//! Fleet-wide streams are trimmed by age here too ([`Store::trim_fleet_streams`]).

use crate::Store;
use crate::audit::{AuditEntry, RawEntry, parse_entry};
use crate::error::Error;
use crate::index::{Leaving, sync_cmds};
use crate::order::{OrderRecord, parse_record};
use crate::parse::{parse_order_id, parse_state, timestamp};
use jiff::Timestamp;
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Stage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The states an order is finished in: nothing moves it any more and no
/// person needs it, so it may leave Redis.
pub const FINISHED: [OrderState; 3] = [
    OrderState::Delivered,
    OrderState::Rejected,
    OrderState::Cancelled,
];

/// The schema name of an archived order's JSON form.
pub const ARCHIVED_SCHEMA: &str = "order.archived/v1";

/// What the archive keeps of one order: its record as Redis held it and its
/// whole audit trail. Two copies of one order (a crash between the confirm
/// and the removal archives it again) share `order_id` and `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchivedOrder {
    pub schema: String,
    pub namespace: String,
    pub order_id: OrderId,
    pub version: u64,
    pub state: OrderState,
    /// When it entered its finished state.
    pub finished_at: Timestamp,
    /// When the snapshot was taken.
    pub archived_at: Timestamp,
    /// The order's hash as stored, field by field (the body as JSON text).
    pub record: BTreeMap<String, String>,
    /// Runs of each stage that ran (its attempt counter).
    pub runs: BTreeMap<Stage, u32>,
    /// The order's audit stream: each entry's id and fields, oldest first.
    pub audit: Vec<ArchivedEntry>,
}

/// One audit entry as the order's stream held it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchivedEntry {
    pub id: String,
    pub fields: BTreeMap<String, String>,
}

impl ArchivedOrder {
    /// The order as [`Store::get_order`] read it before it left Redis.
    pub fn order(&self) -> Result<OrderRecord, Error> {
        let map: HashMap<String, String> = self.record.clone().into_iter().collect();
        parse_record(&self.where_from(), &self.order_id, &map)
    }

    /// Its audit entries, as [`Store::order_audit`] read them.
    pub fn audit_entries(&self) -> Result<Vec<AuditEntry>, Error> {
        let key = self.where_from();
        self.audit
            .iter()
            .map(|entry| {
                let raw: RawEntry = (entry.id.clone(), entry.fields.clone().into_iter().collect());
                parse_entry(&key, raw)
            })
            .collect()
    }

    /// The last audit entry's id ('' if none): what the removal checks.
    fn last_entry_id(&self) -> &str {
        self.audit.last().map_or("", |entry| entry.id.as_str())
    }

    /// Names the archived copy in errors about its content.
    fn where_from(&self) -> String {
        format!(
            "archive:{}:{}@{}",
            self.namespace, self.order_id, self.version
        )
    }
}

/// The replies of the snapshot's pipeline: the order's hash, its audit
/// stream, its attempt counters and the server's time.
type Snapshot = (
    HashMap<String, String>,
    Vec<RawEntry>,
    Vec<Option<u32>>,
    (u64, u64),
);

/// What [`Store::expire_archived`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expired {
    /// The order's keys are gone; this many were removed.
    Removed { keys: u64 },
    /// The order changed since the snapshot (or is no longer finished): kept.
    Changed { version: u64, state: OrderState },
    /// No such order (removed already, e.g. by another sweep).
    Missing,
}

impl Store {
    /// Up to `limit` finished orders that finished before `cutoff`, oldest
    /// first per state, by the state index (which can lag: the snapshot
    /// reads the record itself).
    pub async fn finished_before(
        &self,
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<Vec<OrderId>, Error> {
        // One set per state, each in a slot of its own: a batch, not a
        // pipeline (on a cluster they go to their masters one by one).
        let cmds = FINISHED
            .into_iter()
            .map(|state| {
                let mut cmd = redis::cmd("ZRANGEBYSCORE");
                cmd.arg(self.keys.index(state))
                    .arg("-inf")
                    .arg(cutoff.as_millisecond())
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit);
                cmd
            })
            .collect();
        let found: Vec<Vec<String>> = self.conn.batch(cmds).await?;
        let mut ids = Vec::new();
        for (state, members) in FINISHED.into_iter().zip(found) {
            let key = self.keys.index(state);
            for member in members {
                ids.push(parse_order_id(&key, &member)?);
            }
        }
        ids.truncate(limit);
        Ok(ids)
    }

    /// The order's record and audit trail for the archive, if it exists and
    /// is finished (`None` otherwise: an order a person still needs, or one
    /// already gone, is never archived). Both are read in one round trip on
    /// one connection, so no write lands between them.
    pub async fn archive_snapshot(
        &self,
        order_id: &OrderId,
    ) -> Result<Option<ArchivedOrder>, Error> {
        let key = self.keys.state(order_id);
        let mut attempts = redis::cmd("MGET");
        for stage in Stage::ALL {
            attempts.arg(self.keys.attempts(order_id, stage));
        }
        let (record, audit, runs, now): Snapshot = redis::pipe()
            .atomic()
            .cmd("HGETALL")
            .arg(&key)
            .cmd("XRANGE")
            .arg(self.keys.audit(order_id))
            .arg("-")
            .arg("+")
            .add_command(attempts)
            .cmd("TIME")
            .query_async(&mut self.conn())
            .await?;
        if record.is_empty() {
            return Ok(None);
        }
        let parsed = parse_record(&key, order_id, &record)?;
        if !FINISHED.contains(&parsed.state) {
            return Ok(None);
        }
        let archived_at = timestamp(&key, now.0 * 1000 + now.1 / 1000)?;
        Ok(Some(ArchivedOrder {
            schema: ARCHIVED_SCHEMA.to_owned(),
            namespace: self.namespace().to_owned(),
            order_id: order_id.clone(),
            version: parsed.version,
            state: parsed.state,
            finished_at: parsed.updated_at,
            archived_at,
            record: record.into_iter().collect(),
            runs: Stage::ALL
                .into_iter()
                .zip(runs)
                .filter_map(|(stage, runs)| Some((stage, runs?)))
                .collect(),
            audit: audit
                .into_iter()
                .map(|(id, fields)| ArchivedEntry {
                    id,
                    fields: fields.into_iter().collect(),
                })
                .collect(),
        }))
    }

    /// Removes every key of an archived order in one script, if it is still
    /// as archived; then takes it out of the state index. Call only after
    /// the archive confirmed `archived`.
    pub async fn expire_archived(&self, archived: &ArchivedOrder) -> Result<Expired, Error> {
        let order_id = &archived.order_id;
        let key = self.keys.state(order_id);
        // The idempotency records' names, read first: a script must be given
        // every key it touches. One written after this read comes with a
        // transition, which the version check catches.
        let steps: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.steps(order_id))
            .query_async(&mut self.conn())
            .await?;
        let mut call = self.scripts.expire.prepare_invoke();
        for name in self.keys.order_keys(order_id) {
            call.key(name);
        }
        let tag = format!("{{{order_id}}}");
        for step in &steps {
            // Only keys of this order: a corrupt set must not reach others.
            if !step.contains(&tag) {
                return Err(Error::corrupt(
                    &self.keys.steps(order_id),
                    format!("`{step}` is not a key of this order"),
                ));
            }
            call.key(step);
        }
        call.arg(archived.version).arg(archived.last_entry_id());
        for state in FINISHED {
            call.arg(state.as_str());
        }
        let reply: Vec<String> = call.invoke_async(&mut self.conn()).await?;
        match reply.first().map(String::as_str) {
            Some("expired") => {
                let cmds = sync_cmds(&self.keys, order_id, None, Leaving::Unknown);
                if let Err(err) = self.conn.batch::<redis::Value>(cmds).await {
                    // The readers repair an index entry whose order is gone.
                    tracing::warn!(order_id = %order_id, error = %err, "order expired, but still in the state index");
                }
                Ok(Expired::Removed {
                    keys: crate::parse::parse_num(&key, reply.get(1))?,
                })
            }
            Some("missing") => Ok(Expired::Missing),
            Some("changed") => Ok(Expired::Changed {
                version: crate::parse::parse_num(&key, reply.get(1))?,
                state: parse_state(&key, reply.get(2))?,
            }),
            _ => Err(Error::corrupt(
                &key,
                format!("unexpected script reply {reply:?}"),
            )),
        }
    }

    /// Drops fleet-wide stream entries (the fleet audit copy and operators'
    /// fleet actions) older than `older_than` by the server's clock
    /// (`XTRIM … MINID`, exact: the sweep runs seldom and removes only what
    /// aged out since), besides the length cap they are written with;
    /// returns how many went.
    pub async fn trim_fleet_streams(&self, older_than: Duration) -> Result<u64, Error> {
        let now = self.server_time_ms().await?;
        let older = u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX);
        let min_id = now.saturating_sub(older);
        let cmds = [self.keys.fleet_audit(), self.keys.fleet_notes()]
            .into_iter()
            .map(|key| {
                let mut cmd = redis::cmd("XTRIM");
                cmd.arg(key).arg("MINID").arg(min_id);
                cmd
            })
            .collect();
        let trimmed: Vec<u64> = self.conn.batch(cmds).await?;
        Ok(trimmed.into_iter().sum())
    }

    /// How many keys this namespace holds in Redis and their bytes
    /// (`MEMORY USAGE` of each, `SAMPLES 0`: exact), for capacity checks
    /// and the retention soak. Walks the keyspace (`SCAN`): not for a hot
    /// path.
    pub async fn footprint(&self) -> Result<Footprint, Error> {
        let keys = self.scan(&format!("{}:*", self.keys.namespace())).await?;
        let mut footprint = Footprint::default();
        for chunk in keys.chunks(1000) {
            let cmds = chunk
                .iter()
                .map(|key| {
                    let mut cmd = redis::cmd("MEMORY");
                    cmd.arg("USAGE").arg(key).arg("SAMPLES").arg(0);
                    cmd
                })
                .collect();
            let sizes: Vec<Option<u64>> = self.conn.batch(cmds).await?;
            for size in sizes.into_iter().flatten() {
                footprint.keys += 1;
                footprint.bytes += size;
            }
        }
        Ok(footprint)
    }
}

/// What a namespace holds in Redis ([`Store::footprint`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub keys: u64,
    pub bytes: u64,
}
