//! RabbitMQ streams: append-only queues that every reader reads in full,
//! from the offset it chooses, kept by age and size rather than by being
//! consumed. The fleet keeps two: the archive of finished orders and the
//! customer events.
//!
//! - [`StreamSpec`]: a stream with its retention; [`crate::declare`]
//!   declares the namespace's streams with the rest of the topology.
//! - Writing: a stream is a queue, so [`crate::Publisher::to_queue`]
//!   (persistent, mandatory, awaited to its confirm) or a binding from an
//!   exchange; the confirm means the stream stored the message.
//! - [`read`]: consume from an [`Offset`] until the caller has enough or
//!   the stream has nothing more (no message within `idle`). A stream
//!   consumer needs a prefetch (`basic.qos`) and acks, which only grant
//!   credit: nothing is removed by reading.

use crate::admin;
use crate::headers::as_int;
use crate::topology::{self, text};
use crate::{Error, Meta};
use futures_lite::StreamExt;
use lapin::Connection;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use std::ops::ControlFlow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Messages on their way to a reader at once.
const PREFETCH: u16 = 500;

/// A stream and how long and how much it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    /// `x-max-age`: segments older than this are dropped.
    pub max_age: Duration,
    /// `x-max-length-bytes`: the oldest segments make way past this size.
    pub max_bytes: u64,
}

impl StreamSpec {
    /// The declare arguments.
    pub(crate) fn arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), text("stream"));
        // Whole seconds: the broker takes `<n><unit>`, units Y M D h m s.
        args.insert(
            "x-max-age".into(),
            text(&format!("{}s", self.max_age.as_secs().max(1))),
        );
        args.insert(
            "x-max-length-bytes".into(),
            AMQPValue::LongLongInt(i64::try_from(self.max_bytes).unwrap_or(i64::MAX)),
        );
        args
    }
}

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// The oldest message the stream still keeps.
    First,
    /// The last chunk written (the latest few messages).
    Last,
    /// Only messages written after the reader attached.
    Next,
    /// The first message stored at or after this time (chunk precision).
    At(SystemTime),
    /// This offset (a number the stream gave an earlier message).
    Exact(u64),
}

impl Offset {
    /// `first`, `last`, `next`, an RFC 3339 time or an offset number.
    pub fn parse(text: &str) -> Result<Offset, Error> {
        match text {
            "first" => Ok(Offset::First),
            "last" => Ok(Offset::Last),
            "next" => Ok(Offset::Next),
            _ => {
                if let Ok(offset) = text.parse() {
                    return Ok(Offset::Exact(offset));
                }
                humantime::parse_rfc3339_weak(text)
                    .map(Offset::At)
                    .map_err(|_| Error::Invalid {
                        what: format!("stream offset `{text}`"),
                        reason: "use first, last, next, an RFC 3339 time (2026-01-31T12:00:00Z) or an offset number".into(),
                    })
            }
        }
    }

    fn argument(self) -> AMQPValue {
        match self {
            Offset::First => text("first"),
            Offset::Last => text("last"),
            Offset::Next => text("next"),
            Offset::At(at) => AMQPValue::Timestamp(
                at.duration_since(UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs()),
            ),
            Offset::Exact(n) => AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX)),
        }
    }
}

/// One message read from a stream.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    /// Its offset in the stream: read from `offset + 1` to go on after it.
    pub offset: u64,
    pub body: Vec<u8>,
    pub meta: Meta,
    pub routing_key: String,
}

/// Reads `stream` from `from`, handing each message to `on`, until `on`
/// breaks or no message arrives for `idle` (the reader has caught up with
/// the writers). Returns how many messages were read.
pub async fn read<F>(
    connection: &Connection,
    stream: &str,
    from: Offset,
    idle: Duration,
    mut on: F,
) -> Result<u64, Error>
where
    F: FnMut(StreamMessage) -> ControlFlow<()>,
{
    let channel = topology::open(connection, "reading a stream").await?;
    let result = async {
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(Error::amqp("setting the prefetch (basic.qos)"))?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-stream-offset".into(), from.argument());
        let mut deliveries = channel
            .basic_consume(
                stream.into(),
                "".into(),
                BasicConsumeOptions::default(),
                arguments,
            )
            .await
            .map_err(|source| admin::not_found(stream, source))?;
        let mut read = 0;
        loop {
            let delivery = match tokio::time::timeout(idle, deliveries.next()).await {
                Err(_) | Ok(None) => break,
                Ok(Some(delivery)) => {
                    delivery.map_err(Error::amqp(format!("reading stream `{stream}`")))?
                }
            };
            // Credit for the next ones; a stream keeps what was read.
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(Error::amqp(format!("acking on stream `{stream}`")))?;
            let offset = delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|headers| headers.inner().get("x-stream-offset"))
                .and_then(as_int)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| Error::Invalid {
                    what: format!("a message of stream `{stream}`"),
                    reason: "has no x-stream-offset header: is it a stream?".into(),
                })?;
            read += 1;
            let message = StreamMessage {
                offset,
                meta: Meta::from_properties(&delivery.properties),
                routing_key: delivery.routing_key.to_string(),
                body: delivery.data,
            };
            if on(message).is_break() {
                break;
            }
        }
        let tag = deliveries.tag();
        let _ = channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await;
        Ok(read)
    }
    .await;
    topology::close(&channel).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_from_their_names_times_and_numbers() {
        assert_eq!(Offset::parse("first").unwrap(), Offset::First);
        assert_eq!(Offset::parse("last").unwrap(), Offset::Last);
        assert_eq!(Offset::parse("next").unwrap(), Offset::Next);
        assert_eq!(Offset::parse("42").unwrap(), Offset::Exact(42));
        let at = Offset::parse("2026-01-31T12:00:00Z").unwrap();
        assert_eq!(
            at.argument(),
            AMQPValue::Timestamp(1_769_860_800),
            "seconds since the epoch"
        );
        assert!(Offset::parse("yesterday").is_err());
    }

    #[test]
    fn a_stream_is_declared_with_its_retention() {
        let spec = StreamSpec {
            name: "ns.archive".into(),
            max_age: Duration::from_secs(90 * 86_400),
            max_bytes: 5_000_000,
        };
        let args = spec.arguments();
        assert_eq!(args.inner().get("x-queue-type"), Some(&text("stream")));
        assert_eq!(args.inner().get("x-max-age"), Some(&text("7776000s")));
        assert_eq!(
            args.inner().get("x-max-length-bytes"),
            Some(&AMQPValue::LongLongInt(5_000_000))
        );
    }
}
