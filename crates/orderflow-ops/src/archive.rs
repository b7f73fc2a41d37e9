//! Reading the archive of finished orders (`{ns}.archive`, a RabbitMQ
//! stream): one order that has left Redis ([`find_archived`], for
//! `order show`) and every order archived in a time range as JSONL
//! ([`export`], for a warehouse loader or an audit).
//!
//! The reconciler archives an order before removing its keys; a crash in
//! between archives it again, so the stream can hold two copies of one
//! order: readers take one per order id and version.

use crate::error::{Error, Result};
use crate::target::Target;
use jiff::Timestamp;
use orderflow_broker::stream::{self, Offset, StreamMessage};
use orderflow_core::message::OrderId;
use orderflow_store::ArchivedOrder;
use serde::Serialize;
use std::collections::HashSet;
use std::io::Write;
use std::ops::ControlFlow;
use std::time::{Duration, SystemTime};

/// A reader has caught up once the stream sends nothing for this long.
const CAUGHT_UP: Duration = Duration::from_millis(1500);

/// Records are written in the order they are archived, give or take the
/// sweep's publishes in flight: an export stops reading this long past its
/// range.
const ARCHIVE_SKEW: Duration = Duration::from_secs(60);

/// Where an archived order is.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveLocation {
    /// The stream (`{ns}.archive`).
    pub stream: String,
    /// Its offset in the stream.
    pub offset: u64,
    pub archived_at: Timestamp,
}

/// The newest archived copy of `order_id`, read from the start of the
/// archive (the stream has no index by order id), or `None`.
pub async fn find_archived(
    target: &Target,
    order_id: &OrderId,
) -> Result<Option<(ArchivedOrder, ArchiveLocation)>> {
    let name = target.spec().archive().name.clone();
    let connection = target.broker().await?;
    let mut found = None;
    let mut bad = None;
    let read = stream::read(&connection, &name, Offset::First, CAUGHT_UP, |message| {
        // The header says whose record it is without decoding the body.
        if message.meta.order_id.as_deref() == Some(order_id.as_str()) {
            match decode(&message) {
                Ok(archived) => found = Some((archived, message.offset)),
                Err(err) => bad = Some(err),
            }
        }
        ControlFlow::Continue(())
    })
    .await;
    orderflow_broker::close(&connection, "done").await;
    match read {
        // No archive yet (a fleet that never archived): nothing is in it.
        Err(orderflow_broker::Error::QueueNotFound { .. }) => return Ok(None),
        read => read.map_err(Error::broker(format!("cannot read the archive `{name}`")))?,
    };
    match (found, bad) {
        (Some((archived, offset)), _) => {
            let location = ArchiveLocation {
                stream: name,
                offset,
                archived_at: archived.archived_at,
            };
            Ok(Some((archived, location)))
        }
        (None, Some(err)) => Err(err),
        (None, None) => Ok(None),
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Exported {
    /// Orders written, one line each.
    pub orders: u64,
    /// Second copies of an order left out.
    pub duplicates: u64,
}

/// Writes every order archived in `[from, to)` to `out`, one JSON object
/// (`order.archived/v1`) per line, each order once.
pub async fn export(
    target: &Target,
    from: Timestamp,
    to: Timestamp,
    out: &mut (impl Write + Send),
) -> Result<Exported> {
    let name = target.spec().archive().name.clone();
    let start =
        SystemTime::try_from(from).map_err(|e| Error::Invalid(format!("--from {from}: {e}")))?;
    let stop_after = to + jiff::SignedDuration::try_from(ARCHIVE_SKEW).unwrap_or_default();
    let connection = target.broker().await?;
    let mut seen = HashSet::new();
    let mut exported = Exported {
        orders: 0,
        duplicates: 0,
    };
    let mut failed = None;
    let read = stream::read(
        &connection,
        &name,
        Offset::At(start),
        CAUGHT_UP,
        |message| {
            let archived = match decode(&message) {
                Ok(archived) => archived,
                Err(err) => {
                    failed = Some(err);
                    return ControlFlow::Break(());
                }
            };
            if archived.archived_at >= stop_after {
                return ControlFlow::Break(());
            }
            // The stream starts at a chunk boundary, at or before `from`.
            if archived.archived_at < from || archived.archived_at >= to {
                return ControlFlow::Continue(());
            }
            if !seen.insert((archived.order_id.clone(), archived.version)) {
                exported.duplicates += 1;
                return ControlFlow::Continue(());
            }
            let line = serde_json::to_string(&archived).expect("an archived order serializes");
            if let Err(err) = writeln!(out, "{line}") {
                failed = Some(Error::Invalid(format!("cannot write the export: {err}")));
                return ControlFlow::Break(());
            }
            exported.orders += 1;
            ControlFlow::Continue(())
        },
    )
    .await;
    orderflow_broker::close(&connection, "done").await;
    read.map_err(Error::broker(format!("cannot read the archive `{name}`")))?;
    if let Some(err) = failed {
        return Err(err);
    }
    Ok(exported)
}

fn decode(message: &StreamMessage) -> Result<ArchivedOrder> {
    serde_json::from_slice(&message.body).map_err(|e| {
        Error::Invalid(format!(
            "archive record at offset {} is not an archived order: {e}",
            message.offset
        ))
    })
}
