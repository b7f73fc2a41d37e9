//! # orderflow-store
//!
//! The Redis store every orderflow worker uses: order state with
//! compare-and-set, idempotency records written in the same step as the
//! state, attempt counters, stage leases with fencing, audit streams,
//! schedules for the reconciler and a by-state index for operators.
//!
//! # Layout
//! - [`Store`] (this file): the connection, its options and health checks.
//! - [`error`]: [`Error`] and the [`ErrorClass`] that tells a caller what to
//!   do about it.
//! - `keys`: every key name (below).
//! - `scripts/`: the Lua scripts, one `.lua` file each, loaded with
//!   `include_str!` into [`redis::Script`]s.
//! - `parse`: reading values back; unreadable data is [`Error::Corrupt`].
//! - [`order`]: order records, `create_order`, the compare-and-set
//!   `transition`, audit-only notes and idempotency records.
//! - [`attempts`]: attempt counters per order and stage.
//! - [`lease`]: stage leases with fencing numbers and a background renewer.
//! - [`begin`]: a delivery's start in one round trip (lease, record or run
//!   count and order).
//! - [`audit`]: the per-order and fleet-wide audit streams.
//! - [`index`]: orders by state, for operators.
//! - [`schedule`]: due-time schedules and the replica-safe claim.
//! - [`budget`]: the fleet-wide retry budget per downstream.
//! - [`cancel`]: cancellation requests and fulfilment progress, facts that
//!   do not move the state.
//! - [`operator`]: operators' replay records: what a replay already sent.
//! - [`retention`]: a finished order's snapshot for the archive and the
//!   removal of its keys once archived; fleet streams trimmed by age.
//! - [`fleet`]: worker heartbeats, paused stages and the audit stream of
//!   operators' actions on the fleet.
//!
//! # Keys
//! ```text
//! {ns}:order:{<id>}:state                 hash: the order record
//! {ns}:order:{<id>}:audit                 stream: the order's audit record
//! {ns}:order:{<id>}:idem:<stage>:<step>   string: a finished step's result (JSON)
//! {ns}:order:{<id>}:attempts:<stage>      counter
//! {ns}:order:{<id>}:lease:<stage>         hash (token, fencing), expires
//! {ns}:order:{<id>}:fence:<stage>         counter: last fencing number granted
//! {ns}:order:{<id>}:early_cancel          hash: a cancellation kept until its order arrives
//! {ns}:order:{<id>}:steps                 set: the names of the order's idem keys (for retention)
//! {ns}:audit                              stream: fleet-wide copy, capped
//! {ns}:index:<state>                      sorted set: order ids by updated_at ms
//! {ns}:schedule:<kind>                    sorted set: order ids by due ms
//! {ns}:budget:<downstream>                hash: first attempts and retries per second
//! {ns}:replay:<replay_id>:<message_id>    hash (state, owner, at_ms): one replayed message, expires
//! {ns}:worker:<actor>                     hash: a worker's heartbeat, expires
//! {ns}:paused:<stage>                     hash: the stage is paused (reason, actor, since)
//! {ns}:fleet:audit                        stream: operators' actions on the fleet, capped
//! ```
//!
//! # What is atomic
//! Everything about one order is written by a single-key command or by one
//! script over that order's keys, which share the `{<id>}` hash tag and so
//! one Redis Cluster slot. The fleet-wide keys may live in other slots, so no
//! order script touches them: the fleet audit copy and the state index are
//! written by a separate command right after the order's script. They are
//! indexes that can lag by one step after a crash; the order's own keys are
//! the record. Schedules are fleet-wide keys with single-key scripts of
//! their own.
//!
//! Durability is Redis' own: nothing survives a Redis restart unless the
//! server persists (AOF with `appendfsync everysec` or stricter).

pub mod attempts;
pub mod audit;
pub mod begin;
pub mod budget;
pub mod cancel;
pub mod error;
pub mod fleet;
pub mod index;
mod keys;
pub mod lease;
pub mod operator;
pub mod order;
mod parse;
pub mod retention;
pub mod schedule;
mod scripts;

pub use audit::AuditEntry;
pub use begin::Begun;
pub use budget::Budget;
pub use cancel::{CancelAnswer, CancelAsk, CancelRequest, KeptCancel, Progress};
pub use error::{Error, ErrorClass};
pub use fleet::{FleetEntry, FleetNote, Heartbeat, LiveWorker, PauseOutcome, StagePause};
pub use index::{IndexCursor, IndexEntry, IndexPage};
pub use keys::DEFAULT_NAMESPACE;
pub use lease::{Lease, LeaseKeeper};
pub use operator::ReplayClaim;
pub use order::{
    CreateOutcome, FieldUpdate, LOST_EVENT, LastOutcome, LostOrder, Note, OrderRecord, Transition,
};
pub use retention::{ArchivedEntry, ArchivedOrder, Expired, Footprint};
pub use schedule::{Claim, ScheduleKind};

use keys::Keys;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use scripts::Scripts;
use std::sync::Arc;
use std::time::Duration;

/// How to connect.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Prefix of every key; lets tests and tenants share one Redis.
    pub namespace: String,
    /// The fleet-wide audit stream is trimmed to about this many entries
    /// (`MAXLEN ~`); the per-order streams are never trimmed.
    pub fleet_audit_maxlen: u64,
    /// A command without an answer after this long fails as
    /// [`Error::Unavailable`].
    pub response_timeout: Duration,
    pub connection_timeout: Duration,
    /// Connection attempts per reconnect before a command fails as
    /// [`Error::Unavailable`]. Kept low: callers decide how long to wait.
    pub reconnect_retries: usize,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            fleet_audit_maxlen: 1_000_000,
            response_timeout: Duration::from_millis(500),
            connection_timeout: Duration::from_secs(1),
            reconnect_retries: 2,
        }
    }
}

/// A handle on the store. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    keys: Arc<Keys>,
    scripts: Arc<Scripts>,
    fleet_audit_maxlen: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("namespace", &self.keys.namespace())
            .field("fleet_audit_maxlen", &self.fleet_audit_maxlen)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects with default options in `namespace`.
    pub async fn connect(url: &str, namespace: &str) -> Result<Store, Error> {
        Store::connect_with(
            url,
            StoreOptions {
                namespace: namespace.to_owned(),
                ..StoreOptions::default()
            },
        )
        .await
    }

    /// Connects and checks the connection. An unreachable server is
    /// [`Error::Unavailable`]; a malformed URL is [`Error::InvalidArgument`].
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Store, Error> {
        let keys = Keys::new(&options.namespace)?;
        let client = redis::Client::open(url)
            .map_err(|err| Error::InvalidArgument(format!("redis url `{url}`: {err}")))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(options.response_timeout))
            .set_connection_timeout(Some(options.connection_timeout))
            .set_number_of_retries(options.reconnect_retries)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        let store = Store {
            conn,
            keys: Arc::new(keys),
            scripts: Arc::new(Scripts::new()),
            fleet_audit_maxlen: options.fleet_audit_maxlen,
        };
        store.ping().await?;
        Ok(store)
    }

    pub fn namespace(&self) -> &str {
        self.keys.namespace()
    }

    /// Round trip to the server: `Ok` once Redis answers again after an
    /// [`Error::Unavailable`].
    pub async fn ping(&self) -> Result<(), Error> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn())
            .await?;
        Ok(())
    }

    /// The server's clock in ms since the Unix epoch. Due times for
    /// [`Store::schedule`] should come from here, not from a local clock.
    pub async fn server_time_ms(&self) -> Result<u64, Error> {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut self.conn()).await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// The server-side id of the current connection (`CLIENT LIST`), for
    /// finding this process's connection when diagnosing.
    pub async fn client_id(&self) -> Result<u64, Error> {
        Ok(redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut self.conn())
            .await?)
    }

    /// Deletes every key of this namespace; returns how many. For tests and
    /// for retiring a namespace, never for a live fleet.
    pub async fn purge_namespace(&self) -> Result<u64, Error> {
        let pattern = format!("{}:*", self.keys.namespace());
        let mut conn = self.conn();
        let mut cursor = 0u64;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                // One DEL per key: in a cluster the keys live in many slots.
                for key in &keys {
                    deleted += redis::cmd("DEL")
                        .arg(key)
                        .query_async::<u64>(&mut conn)
                        .await?;
                }
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// The manager is a cheap handle; commands need it mutably.
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }
}
