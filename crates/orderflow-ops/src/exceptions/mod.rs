//! Exception queues (`{ns}.{stage}.exceptions`): what a person must look
//! at, and the operator's ways out of them.
//!
//! - [`list()`] and [`peek()`] read without consuming: messages are taken with
//!   `basic.get` on one channel and all returned when it closes (the broker
//!   marks them redelivered and, on a quorum queue, counts the delivery in
//!   `x-delivery-count`). Both read a bounded number. A read of the whole
//!   queue keeps its order; the broker puts messages returned from a
//!   partial read behind the others, so a queue longer than the limit
//!   rotates.
//! - [`export()`] drains a queue into a JSONL file ([`record`] has the line
//!   format); a message is acknowledged only after its line is written and
//!   synced, and a rerun acknowledges without writing what the file already
//!   holds. [`import()`] publishes such a file back, byte for byte.
//! - [`replay()`] sends messages back to their stage with the attempt count
//!   reset, under a replay id recorded per message in the store, so a
//!   repeated or concurrent replay never sends a message twice; it can be
//!   dry-run, rate-limited, tried on a canary first, and halts by itself
//!   when replayed orders come back.
//! - [`discard()`] and [`edit()`] remove or fix messages.
//!
//! Every action that changes something is audited: a note on the order the
//! message names (actor `operator:<name>`), or a fleet audit entry when it
//! names none the store knows.

mod audit;
mod edit;
mod export;
mod list;
pub mod message;
pub mod reasons;
pub mod record;
mod replay;

pub use audit::Audited;
pub use edit::{
    DiscardReport, EditReport, EditRequest, EditSubject, apply_sets, check_body, discard, edit,
    open_edit,
};
pub use export::{ExportReport, ImportReport, export, import, read_exported};
pub use list::{Group, Listing, Peeked, QueueScan, list, peek};
pub use message::{BodyKind, ExceptionMessage};
pub use record::Record;
pub use replay::{
    Halt, HaltThreshold, Prediction, ReplayOutcome, ReplayReport, ReplayRequest, ReplayedMessage,
    Selection, new_replay_id, replay,
};

use crate::Error;
use orderflow_broker::admin::{self, Cursor, Taken};
use orderflow_broker::{Connection, Names, Publisher};
use orderflow_core::{Policy, Stage};
use orderflow_store::Store;

/// How many messages of one queue a command reads at most, unless told.
pub const DEFAULT_READ_LIMIT: usize = 10_000;

/// One namespace's exception queues, and the connections to act on them.
pub struct ExceptionQueues {
    names: Names,
    connection: Connection,
    publisher: Publisher,
}

/// Who acts, under which policy, with the store the audit goes to: what
/// every changing action needs.
pub struct Operator<'a> {
    pub store: &'a Store,
    pub policy: &'a Policy,
    /// The person; audited as `operator:<actor>`.
    pub actor: &'a str,
}

impl Operator<'_> {
    pub(crate) fn audit_actor(&self) -> Result<String, Error> {
        let actor = self.actor.trim();
        if actor.is_empty() {
            return Err(Error::Invalid(
                "who is acting? give --actor, or set ORDERFLOW_ACTOR or USER".to_owned(),
            ));
        }
        Ok(format!("operator:{actor}"))
    }
}

/// A message held by a scan, read.
pub(crate) struct Held {
    pub(crate) taken: Taken,
    pub(crate) message: ExceptionMessage,
}

/// The messages a scan holds; those not acked return to the queue when
/// the scan closes.
pub(crate) struct Scan {
    cursor: Cursor,
    pub(crate) held: Vec<Held>,
    /// Read to the end of the queue (rather than stopped at the limit).
    pub(crate) complete: bool,
}

impl Scan {
    pub(crate) async fn close(self) {
        self.cursor.close().await;
    }
}

impl ExceptionQueues {
    /// Connects to the broker and checks that the namespace's exception
    /// queues exist.
    pub async fn connect(amqp_url: &str, namespace: &str) -> Result<ExceptionQueues, Error> {
        let names = Names::new(namespace)?;
        let connection = orderflow_broker::connect_named(amqp_url, "orderctl-exceptions").await?;
        let queues = ExceptionQueues {
            publisher: Publisher::lazy(amqp_url, "orderctl-exceptions.publisher"),
            names,
            connection,
        };
        for stage in Stage::ALL {
            if let Err(err) = queues.depth(stage).await {
                queues.close().await;
                return Err(err);
            }
        }
        Ok(queues)
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn queue(&self, stage: Stage) -> String {
        self.names.exception_queue(stage)
    }

    /// Messages ready in the stage's exception queue (those held by another
    /// reader right now are not counted).
    pub async fn depth(&self, stage: Stage) -> Result<u32, Error> {
        let queue = self.queue(stage);
        admin::queue_depth(&self.connection, &queue)
            .await
            .map_err(|e| self.broker_error(e))
    }

    pub async fn close(&self) {
        self.publisher.close().await;
        orderflow_broker::close(&self.connection, "done").await;
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }

    pub(crate) fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// A missing queue is a wrong namespace, said so.
    pub(crate) fn broker_error(&self, err: orderflow_broker::Error) -> Error {
        match err {
            orderflow_broker::Error::QueueNotFound { queue } => Error::NoSuchQueue {
                queue,
                namespace: self.names.namespace().to_owned(),
            },
            err => err.into(),
        }
    }

    /// Takes up to `limit` messages of the stage's exception queue and holds
    /// them.
    pub(crate) async fn scan(&self, stage: Stage, limit: usize) -> Result<Scan, Error> {
        let queue = self.queue(stage);
        let cursor = Cursor::open(&self.connection, &queue)
            .await
            .map_err(|e| self.broker_error(e))?;
        let now = jiff::Timestamp::now();
        let mut held = Vec::new();
        let mut complete = false;
        while held.len() < limit {
            match cursor.next().await {
                Ok(Some(taken)) => {
                    let message = ExceptionMessage::read(stage, taken.message(), now);
                    held.push(Held { taken, message });
                }
                Ok(None) => {
                    complete = true;
                    break;
                }
                Err(err) => {
                    cursor.close().await;
                    return Err(self.broker_error(err));
                }
            }
        }
        Ok(Scan {
            cursor,
            held,
            complete,
        })
    }

    /// Reads up to `limit` messages of the stage's queue without consuming
    /// them.
    pub(crate) async fn browse(
        &self,
        stage: Stage,
        limit: usize,
    ) -> Result<Vec<admin::Browsed>, Error> {
        admin::browse(&self.connection, &self.queue(stage), limit)
            .await
            .map_err(|e| self.broker_error(e))
    }
}
