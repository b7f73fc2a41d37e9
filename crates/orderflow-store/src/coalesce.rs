//! The fleet-wide keys that follow every order write (the fleet audit
//! copy, the state index), sent for many orders in one pipeline: a writer
//! hands its commands to one task per store and awaits their answer; the
//! task sends whatever arrived while the previous pipeline was out. Under
//! load that is one round trip for several writes instead of one each
//! (measured in docs/performance.md); alone, a writer waits as it did.

use crate::connection::Conn;
use redis::Cmd;
use std::sync::OnceLock;
use tokio::sync::{mpsc, oneshot};

/// At most this many commands in one pipeline.
const MOST_PER_PIPELINE: usize = 512;

type Done = oneshot::Sender<Result<(), String>>;

pub(crate) struct FleetWrites {
    conn: Conn,
    /// Started by the first write, in the runtime that makes it.
    queue: OnceLock<mpsc::UnboundedSender<(Vec<Cmd>, Done)>>,
}

impl FleetWrites {
    pub(crate) fn new(conn: Conn) -> FleetWrites {
        FleetWrites {
            conn,
            queue: OnceLock::new(),
        }
    }

    /// Sends `cmds` (in one pipeline with other writers' commands) and
    /// waits for the answer; the error is the rendered one, for the log.
    pub(crate) async fn send(&self, cmds: Vec<Cmd>) -> Result<(), String> {
        let queue = self.queue.get_or_init(|| {
            let (queue, pending) = mpsc::unbounded_channel();
            tokio::spawn(run(self.conn.clone(), pending));
            queue
        });
        let (done, answer) = oneshot::channel();
        // The task stops only with the runtime it runs on, which the
        // store's connection needs too.
        let stopped = || "the fleet writes' task stopped".to_owned();
        queue.send((cmds, done)).map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn run(conn: Conn, mut pending: mpsc::UnboundedReceiver<(Vec<Cmd>, Done)>) {
    while let Some((mut cmds, first)) = pending.recv().await {
        let mut waiting = vec![first];
        while cmds.len() < MOST_PER_PIPELINE {
            let Ok((more, done)) = pending.try_recv() else {
                break;
            };
            cmds.extend(more);
            waiting.push(done);
        }
        let answer = conn
            .batch::<redis::Value>(cmds)
            .await
            .map(drop)
            .map_err(|err| err.to_string());
        for done in waiting {
            // A writer that gave up no longer waits for its answer.
            let _ = done.send(answer.clone());
        }
    }
}
