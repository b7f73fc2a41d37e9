//! Cancellation requests and fulfilment progress: facts about an order that
//! do not move its state.
//!
//! A cancellation request is kept on the order (`cancel_requested`) and
//! bumps its version, so any worker that read the order earlier fails its
//! compare-and-set and decides again knowing it. The stage that owns the
//! order's current state then compensates once its outcome is known.
//!
//! A request for an order that does not exist yet — a cancel that overtook
//! its order, a replacement naming an order still on its way — is kept for
//! that order id ([`Store::ask_cancel`]) and applied in the order's
//! creation ([`Store::create_order`]); both are one script on the order's
//! hash slot, so however the deliveries of several workers interleave, the
//! request meets its order exactly once. A kept request that never meets
//! its order is read back ([`Store::kept_cancel`]) and dropped
//! ([`Store::drop_kept_cancel`]) by whoever reports it.
//!
//! Fulfilment progress is the shipment's last step seen and since when, so
//! "no progress for too long" holds across reconciler replicas and restarts.

use crate::error::Error;
use crate::order::parse_written;
use crate::parse::{parse_num, parse_state};
use crate::{Note, Store};
use orderflow_core::OrderState;
use orderflow_core::message::OrderId;
use std::collections::HashMap;

/// A cancellation as ingress asks it: the request (`note.reason` is its
/// reason), the conditions under which it applies, and what to keep should
/// the order not exist yet.
#[derive(Debug, Clone, Copy)]
pub struct CancelAsk<'a> {
    pub note: &'a Note,
    /// The order must belong to this customer (a replacement order may only
    /// cancel its own customer's order); `None`: anyone's.
    pub customer_id: Option<&'a str>,
    /// The states in which the request still applies; empty: any.
    pub only_in: &'a [OrderState],
    /// The message to park if the order never arrives, and its id.
    pub message: &'a [u8],
    pub message_id: &'a str,
}

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

/// The result of [`Store::ask_cancel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelAnswer {
    /// The order exists and the request applies: as [`Store::request_cancel`].
    Requested(CancelRequest),
    /// The order does not exist yet: the request is kept for it, since
    /// `kept_at_ms` (server time; a request kept earlier stands).
    Kept { kept_at_ms: u64 },
    /// The order belongs to another customer: nothing changed.
    OtherCustomer { customer_id: String },
    /// The order is past the states the request applies in: nothing
    /// changed.
    TooLate { version: u64, state: OrderState },
}

/// A cancellation kept for an order that has not arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptCancel {
    pub reason: String,
    /// The producer's message (or, for a replacement order, an
    /// `order.cancel/v1` naming the order), to park as it is.
    pub message: Vec<u8>,
    pub message_id: String,
    pub correlation_id: String,
    /// Server time (ms) it was kept.
    pub kept_at_ms: u64,
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
    /// An unknown order is [`Error::NotFound`].
    pub async fn request_cancel(
        &self,
        order_id: &OrderId,
        note: &Note,
    ) -> Result<CancelRequest, Error> {
        let ask = CancelAsk {
            note,
            customer_id: None,
            only_in: &[],
            message: &[],
            message_id: "",
        };
        match self.cancel_script(order_id, &ask, false).await? {
            CancelAnswer::Requested(requested) => Ok(requested),
            other => Err(Error::corrupt(
                &self.keys.state(order_id),
                format!("an unconditional cancel answered {other:?}"),
            )),
        }
    }

    /// Records the request on the order as [`Store::request_cancel`] does,
    /// if the order is `ask.customer_id`'s and in one of `ask.only_in`; an
    /// order that does not exist yet gets the request kept for it, applied
    /// when it is created.
    pub async fn ask_cancel(
        &self,
        order_id: &OrderId,
        ask: &CancelAsk<'_>,
    ) -> Result<CancelAnswer, Error> {
        self.cancel_script(order_id, ask, true).await
    }

    async fn cancel_script(
        &self,
        order_id: &OrderId,
        ask: &CancelAsk<'_>,
        keep: bool,
    ) -> Result<CancelAnswer, Error> {
        let state_key = self.keys.state(order_id);
        let note = ask.note;
        let reason = note.reason.as_deref().unwrap_or("cancelled");
        let only_in: Vec<&str> = ask.only_in.iter().map(|s| s.as_str()).collect();
        if keep && ask.message.is_empty() {
            return Err(Error::InvalidArgument(
                "a cancellation to keep needs its message".into(),
            ));
        }
        let message: &[u8] = if keep { ask.message } else { &[] };
        let reply: Vec<String> = self
            .scripts
            .cancel
            .key(&state_key)
            .key(self.keys.audit(order_id))
            .key(self.keys.early_cancel(order_id))
            .arg(order_id.as_str())
            .arg(&note.actor)
            .arg(&note.event)
            .arg(reason)
            .arg(&note.correlation_id)
            .arg(note.policy_id.as_str())
            .arg(ask.customer_id.unwrap_or_default())
            .arg(only_in.join(","))
            .arg(message)
            .arg(ask.message_id)
            .invoke_async(&mut self.conn())
            .await?;
        match reply.first().map(String::as_str) {
            Some("missing") => Err(Error::NotFound(order_id.clone())),
            Some("kept") => Ok(CancelAnswer::Kept {
                kept_at_ms: parse_num(&state_key, reply.get(1))?,
            }),
            Some("other_customer") => Ok(CancelAnswer::OtherCustomer {
                customer_id: reply.get(1).cloned().unwrap_or_default(),
            }),
            Some("too_late") => Ok(CancelAnswer::TooLate {
                version: parse_num(&state_key, reply.get(1))?,
                state: parse_state(&state_key, reply.get(2))?,
            }),
            Some("already") => Ok(CancelAnswer::Requested(CancelRequest::AlreadyRequested {
                version: parse_num(&state_key, reply.get(1))?,
                state: parse_state(&state_key, reply.get(2))?,
                reason: reply.get(3).cloned().unwrap_or_default(),
            })),
            _ => {
                let written = parse_written(&state_key, reply)?;
                let (version, state) = (written.version, written.state);
                // Not a move: the index keeps the time the order entered
                // its state, which the stuck-order sweep reads.
                self.after_write(order_id, written, None).await;
                Ok(CancelAnswer::Requested(CancelRequest::Recorded {
                    version,
                    state,
                }))
            }
        }
    }

    /// The cancellation kept for `order_id`, if one still waits for its
    /// order (once the order is created it is used up).
    pub async fn kept_cancel(&self, order_id: &OrderId) -> Result<Option<KeptCancel>, Error> {
        let key = self.keys.early_cancel(order_id);
        let map: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.conn())
            .await?;
        if map.is_empty() {
            return Ok(None);
        }
        let text = |field: &str| {
            map.get(field)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .ok_or_else(|| Error::corrupt(&key, format!("missing field `{field}`")))
        };
        Ok(Some(KeptCancel {
            reason: text("reason")?,
            message: map.get("message").cloned().unwrap_or_default(),
            message_id: text("message_id")?,
            correlation_id: text("correlation_id")?,
            kept_at_ms: parse_num(&key, Some(&text("kept_at_ms")?))?,
        }))
    }

    /// Drops the cancellation kept for `order_id` since `kept_at_ms` (once
    /// reported); `false` if it is gone or another one is kept now.
    pub async fn drop_kept_cancel(
        &self,
        order_id: &OrderId,
        kept_at_ms: u64,
    ) -> Result<bool, Error> {
        let dropped: i64 = self
            .scripts
            .drop_kept_cancel
            .key(self.keys.early_cancel(order_id))
            .arg(kept_at_ms)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(dropped == 1)
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
