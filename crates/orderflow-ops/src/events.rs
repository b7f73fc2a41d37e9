//! Reading the customer events stream (`{ns}.events.stream`), which keeps
//! every event the fleet sent to `{ns}.events` for the policy's retention:
//! `orderctl events tail` reads it from the offset an operator chooses, as
//! any other subscriber may.

use crate::error::{Error, Result};
use crate::target::Target;
use orderflow_broker::stream::{self, Offset};
use orderflow_core::message::OrderId;
use serde::Serialize;
use std::ops::ControlFlow;
use std::time::Duration;

/// One customer event as the stream keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamedEvent {
    /// Its offset: read from the next one to go on after it.
    pub offset: u64,
    /// `order.<state>` or `fulfilment.<step>`.
    pub routing_key: String,
    pub order_id: Option<String>,
    pub order_version: Option<u64>,
    pub message_id: Option<String>,
    /// Seconds since the epoch, when the fleet sent it.
    pub timestamp: Option<u64>,
    /// The event as sent (`docs/messages.md`); the text when not JSON.
    pub event: serde_json::Value,
}

/// What to read.
#[derive(Debug, Clone)]
pub struct Tail {
    pub from: Offset,
    /// Only this order's events.
    pub order: Option<OrderId>,
    /// Stop after this many (matching) events.
    pub limit: Option<u64>,
    /// Stop once the stream sends nothing for this long (caught up).
    pub idle: Duration,
}

/// Hands each matching event to `on`, oldest first; returns how many.
pub async fn tail(
    target: &Target,
    tail: &Tail,
    mut on: impl FnMut(StreamedEvent) + Send,
) -> Result<u64> {
    let name = target.spec().events().name.clone();
    let connection = target.broker().await?;
    let mut shown = 0;
    let read = stream::read(&connection, &name, tail.from, tail.idle, |message| {
        if tail.limit.is_some_and(|limit| shown >= limit) {
            return ControlFlow::Break(());
        }
        let order_id = message.meta.order_id.clone();
        if let Some(wanted) = &tail.order
            && order_id.as_deref() != Some(wanted.as_str())
        {
            return ControlFlow::Continue(());
        }
        let event = serde_json::from_slice(&message.body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&message.body).into_owned())
        });
        on(StreamedEvent {
            offset: message.offset,
            routing_key: message.routing_key,
            order_id,
            order_version: message.meta.order_version,
            message_id: message.meta.message_id,
            timestamp: message.meta.timestamp,
            event,
        });
        shown += 1;
        if tail.limit.is_some_and(|limit| shown >= limit) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await;
    orderflow_broker::close(&connection, "done").await;
    read.map_err(Error::broker(format!(
        "cannot read the events stream `{name}`"
    )))?;
    Ok(shown)
}
