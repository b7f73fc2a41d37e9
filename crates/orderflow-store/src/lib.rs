//! # orderflow-store
//!
//! The Redis store every orderflow worker uses: order state with
//! compare-and-set, idempotency records written in the same step as the
//! state, attempt counters, stage leases with fencing, audit streams,
//! schedules for the reconciler and a by-state index for operators.
//!
//! # Layout
//! - [`Store`] (this file): connecting, its options and health checks.
//! - `connection`: one Redis or a Redis Cluster behind one handle; the URL
//!   forms ([`CLUSTER_SCHEME`]).
//! - [`topology`]: the Redis topology for operators, and `SCAN` over every
//!   master.
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
//! # Redis Cluster: which slot
//! One order is one slot: every key of an order carries the order id as
//! its hash tag (`{<id>}`), so its keys sit together on one shard and
//! shards scale by orders. The fleet-wide keys (every key above without
//! `order:`) carry no tag: each lives in the slot of its whole name
//! (`CLUSTER KEYSLOT <key>`), so they spread over the shards, and each is
//! read and written only by single-key commands and scripts:
//!
//! | key | written by | slot |
//! |---|---|---|
//! | `{ns}:audit` | `XADD` after each order write | its own |
//! | `{ns}:index:<state>` | `ZADD`/`ZREM` after each move, `index_page.lua` | its own, one per state |
//! | `{ns}:schedule:<kind>` | `ZADD`/`ZREM`, `claim_due.lua`, `finish_claim.lua`, `schedule_in.lua` | its own, one per kind |
//! | `{ns}:budget:<downstream>` | `budget.lua` | its own, one per downstream |
//! | `{ns}:replay:<replay>:<message>` | `replay_claim.lua`, `replay_finish.lua` | its own, one per message |
//! | `{ns}:worker:<actor>` | `heartbeat.lua`, `DEL` | its own; listed by `SCAN` on every master |
//! | `{ns}:paused:<stage>` | `pause.lua`, `MULTI HGETALL DEL` | its own |
//! | `{ns}:fleet:audit` | `XADD` | its own |
//!
//! Where one step touches several of them (an order write's index move and
//! audit copy, a page's state checks, the counts by state) the commands go
//! as one pipeline on one node and, on a cluster, each on its own to its
//! slot's master, all at once (`connection::Conn::batch`): never a
//! pipeline, script or `MULTI` across slots. A keyspace `SCAN` (heartbeats,
//! purging a namespace) asks every master.
//!
//! # What is atomic
//! Everything about one order is written by a single-key command or by one
//! script over that order's keys, which share the `{<id>}` hash tag and so
//! one Redis Cluster slot. The fleet-wide keys live in other slots, so no
//! order script touches them: the fleet audit copy and the state index are
//! written by separate commands right after the order's script. They are
//! indexes that can lag by one step after a crash; the order's own keys are
//! the record. Schedules are fleet-wide keys with single-key scripts of
//! their own.
//!
//! # Durability
//! Durability is Redis' own: nothing survives a Redis restart unless the
//! server persists (AOF with `appendfsync everysec` or stricter), and a
//! replica promoted in a failover lacks the writes its master had not yet
//! sent it. [`StoreOptions::replica_acks`] makes each order write wait
//! (`WAIT`) until that many replicas have it, which narrows that window
//! without closing it (see docs/scaling.md).

pub mod attempts;
pub mod audit;
pub mod begin;
pub mod budget;
pub mod cancel;
mod coalesce;
mod connection;
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
pub mod topology;

pub use audit::AuditEntry;
pub use begin::Begun;
pub use budget::Budget;
pub use cancel::{CancelAnswer, CancelAsk, CancelRequest, KeptCancel, Progress};
pub use connection::CLUSTER_SCHEME;
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
pub use topology::{ClusterMaster, ClusterNode, ClusterTopology, RedisTopology};

use connection::{Conn, Target};
use keys::Keys;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
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
    /// [`Error::Unavailable`] (on a cluster: one attempt at one node; see
    /// `cluster_patience`).
    pub response_timeout: Duration,
    pub connection_timeout: Duration,
    /// Connection attempts per reconnect before a command fails as
    /// [`Error::Unavailable`]. Kept low: callers decide how long to wait.
    pub reconnect_retries: usize,
    /// Cluster only: how long one command keeps being retried — redirects,
    /// reconnects, a master down until its replica is promoted — before it
    /// fails as [`Error::Unavailable`]. Set it past the cluster's
    /// `cluster-node-timeout` plus a promotion (a few seconds), so a
    /// failover delays writes rather than failing them. The default suits
    /// Redis' default node timeout of 15 s.
    pub cluster_patience: Duration,
    /// Cluster only: retries of one command within `cluster_patience`; the
    /// waits between them grow from 100 ms to 1 s.
    pub cluster_retries: u32,
    /// After each write of an order's state, wait until this many replicas
    /// acknowledged it (`WAIT`), at most `replica_ack_timeout`. 0: do not
    /// wait. Narrows the window in which a failover loses an acknowledged
    /// write; does not close it (replication stays asynchronous).
    pub replica_acks: u32,
    pub replica_ack_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            fleet_audit_maxlen: 1_000_000,
            response_timeout: Duration::from_millis(500),
            connection_timeout: Duration::from_secs(1),
            reconnect_retries: 2,
            cluster_patience: Duration::from_secs(20),
            cluster_retries: 40,
            replica_acks: 0,
            replica_ack_timeout: Duration::from_millis(100),
        }
    }
}

/// Replicas to wait for after a state write, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplicaAcks {
    pub(crate) replicas: u32,
    pub(crate) timeout_ms: u64,
}

/// A handle on the store. Cheap to clone; clones share one connection (on
/// a cluster, one per node).
#[derive(Clone)]
pub struct Store {
    conn: Conn,
    keys: Arc<Keys>,
    scripts: Arc<Scripts>,
    fleet_audit_maxlen: u64,
    replica_acks: Option<ReplicaAcks>,
    /// First attempts counted in this process, shared by its clones.
    tally: Arc<budget::Tally>,
    fleet_writes: Arc<coalesce::FleetWrites>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("namespace", &self.keys.namespace())
            .field("cluster", &self.conn.is_cluster())
            .field("fleet_audit_maxlen", &self.fleet_audit_maxlen)
            .finish_non_exhaustive()
    }
}

/// Checks a Redis URL as [`Store::connect_with`] reads it, without
/// connecting: [`Error::InvalidArgument`] says what is wrong (never with the
/// password).
pub fn check_url(url: &str) -> Result<(), Error> {
    Target::parse(url).map(|_| ())
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

    /// Connects to one Redis (`redis://…`) or a Redis Cluster
    /// (`redis+cluster://host:port,…`, see [`CLUSTER_SCHEME`]) and checks
    /// the connection. An unreachable server is [`Error::Unavailable`]; a
    /// malformed URL is [`Error::InvalidArgument`].
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Store, Error> {
        let keys = Keys::new(&options.namespace)?;
        let conn = match Target::parse(url)? {
            Target::Node(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(options.response_timeout))
                    .set_connection_timeout(Some(options.connection_timeout))
                    .set_number_of_retries(options.reconnect_retries)
                    .set_max_delay(Duration::from_secs(1));
                Conn::Node(ConnectionManager::new_with_config(client, config).await?)
            }
            Target::Cluster(seeds) => {
                let client = ClusterClientBuilder::new(seeds)
                    .connection_timeout(options.connection_timeout)
                    .response_timeout(options.response_timeout)
                    .overall_response_timeout(Some(options.cluster_patience))
                    .retries(options.cluster_retries)
                    .min_retry_wait(100)
                    .max_retry_wait(1000)
                    .build()
                    .map_err(|err| Error::InvalidArgument(format!("redis cluster: {err}")))?;
                Conn::Cluster(client.get_async_connection().await?)
            }
        };
        let store = Store {
            fleet_writes: Arc::new(coalesce::FleetWrites::new(conn.clone())),
            conn,
            keys: Arc::new(keys),
            scripts: Arc::new(Scripts::new()),
            fleet_audit_maxlen: options.fleet_audit_maxlen,
            replica_acks: (options.replica_acks > 0).then(|| ReplicaAcks {
                replicas: options.replica_acks,
                timeout_ms: u64::try_from(options.replica_ack_timeout.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            }),
            tally: Arc::default(),
        };
        store.ping().await?;
        Ok(store)
    }

    pub fn namespace(&self) -> &str {
        self.keys.namespace()
    }

    /// Whether this store runs on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
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
    /// finding this process's connection when diagnosing (on a cluster: of
    /// its connection to some node).
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
        let mut deleted = 0;
        // One DEL per key: in a cluster the keys live in many slots.
        for key in self.scan(&pattern).await? {
            deleted += redis::cmd("DEL")
                .arg(&key)
                .query_async::<u64>(&mut conn)
                .await?;
        }
        Ok(deleted)
    }

    /// The connection is a cheap handle; commands need it mutably.
    fn conn(&self) -> Conn {
        self.conn.clone()
    }
}
