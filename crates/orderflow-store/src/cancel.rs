//! Cancellation requests and fulfilment progress: facts about an order that
//! do not move its state.
//!
//! A cancellation request is kept on the order (`cancel_requested`) and
//! bumps its version, so any worker that read the order earlier fails its
//! compare-and-set and decides again knowing it. The stage that owns the
//! order's current state then compensates once its outcome is known.
//!
//! Fulfilment progress is the shipment's last step seen and since when, so
//! "no progress for too long" holds across reconciler replicas and restarts.

use crate::error::Error;
use crate::order::parse_written;
use crate::parse::{parse_num, parse_state};
use crate::{Note, Store};
use orderflow_core::OrderState;
use orderflow_core::message::OrderId;

/// The result of [`Store::request_cancel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelRequest {
    /// Recorded now; the order is at `version`, still in `state`.
    Recorded { version: u64, state: OrderState },
    /// Requested before, with `reason`; nothing changed.
    AlreadyRequested {
        version: u64,
        state: OrderState,
        reason: String,
    },
}

/// Where an accepted shipment was last seen, by [`Store::record_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The step is new (audited now) rather than seen before.
    pub new: bool,
    /// Server time (ms) the step was first seen.
    pub since_ms: u64,
}

impl Store {
    /// Records that the order is to be cancelled, once. `note.reason` is
    /// kept as the request's reason.
    pub async fn request_cancel(
        &self,
        order_id: &OrderId,
        note: &Note,
    ) -> Result<CancelRequest, Error> {
        let state_key = self.keys.state(order_id);
        let reason = note.reason.as_deref().unwrap_or("cancelled");
        let reply: Vec<String> = self
            .scripts
            .cancel
            .key(&state_key)
            .key(self.keys.audit(order_id))
            .arg(order_id.as_str())
            .arg(&note.actor)
            .arg(&note.event)
            .arg(reason)
            .arg(&note.correlation_id)
            .arg(note.policy_id.as_str())
            .invoke_async(&mut self.conn())
            .await?;
        match reply.first().map(String::as_str) {
            Some("missing") => Err(Error::NotFound(order_id.clone())),
            Some("already") => Ok(CancelRequest::AlreadyRequested {
                version: parse_num(&state_key, reply.get(1))?,
                state: parse_state(&state_key, reply.get(2))?,
                reason: reply.get(3).cloned().unwrap_or_default(),
            }),
            _ => {
                let written = parse_written(&state_key, reply)?;
                let (version, state) = (written.version, written.state);
                // Not a move: the index keeps the time the order entered
                // its state, which the stuck-order sweep reads.
                self.after_write(order_id, written, None).await;
                Ok(CancelRequest::Recorded { version, state })
            }
        }
    }

    /// Server time (ms) the shipment's current fulfilment step was first
    /// seen, if any step was ever recorded ([`Store::record_progress`]).
    pub async fn fulfilment_since_ms(&self, order_id: &OrderId) -> Result<Option<u64>, Error> {
        let key = self.keys.state(order_id);
        let since: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("fulfilment_since_ms")
            .query_async(&mut self.conn())
            .await?;
        since.map(|ms| parse_num(&key, Some(&ms))).transpose()
    }

    /// Records the shipment's current fulfilment `step` (audited as
    /// `note.event` when it is new) and returns since when it has been there.
    pub async fn record_progress(
        &self,
        order_id: &OrderId,
        step: &str,
        note: &Note,
    ) -> Result<Progress, Error> {
        let state_key = self.keys.state(order_id);
        let reply: Vec<String> = self
            .scripts
            .progress
            .key(&state_key)
            .key(self.keys.audit(order_id))
            .arg(order_id.as_str())
            .arg(&note.actor)
            .arg(step)
            .arg(&note.event)
            .arg(&note.correlation_id)
            .arg(note.policy_id.as_str())
            .invoke_async(&mut self.conn())
            .await?;
        match reply.first().map(String::as_str) {
            Some("missing") => Err(Error::NotFound(order_id.clone())),
            Some("same") => Ok(Progress {
                new: false,
                since_ms: parse_num(&state_key, reply.get(1))?,
            }),
            _ => {
                let written = parse_written(&state_key, reply)?;
                let since_ms = written.at_ms;
                self.after_write(order_id, written, None).await;
                Ok(Progress {
                    new: true,
                    since_ms,
                })
            }
        }
    }
}
