//! Looking into queues: depth, taking single messages, reading a queue
//! without consuming it, and messages exactly as AMQP carries them, to be
//! published again unchanged (for operators' tools and tests, which must
//! not speak AMQP themselves).

use crate::headers::short_string;
use crate::topology;
use crate::{Error, Incoming, Settlement};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use lapin::{Acker, BasicProperties, Channel, Confirmation, Connection, ErrorKind};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long [`RawPublisher::publish`] waits for the broker's confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Messages ready in `queue` (not counting those delivered and unacked).
pub async fn queue_depth(connection: &Connection, queue: &str) -> Result<u32, Error> {
    Ok(queue_stats(connection, queue).await?.messages)
}

/// What the broker says about a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages ready (not counting those delivered and unacked).
    pub messages: u32,
    /// Consumers attached now.
    pub consumers: u32,
}

/// Ready messages and consumers of `queue`.
pub async fn queue_stats(connection: &Connection, queue: &str) -> Result<QueueStats, Error> {
    let channel = topology::open(connection, "reading a queue depth").await?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    topology::close(&channel).await;
    match declared {
        Ok(declared) => Ok(QueueStats {
            messages: declared.message_count(),
            consumers: declared.consumer_count(),
        }),
        Err(source) => Err(not_found(queue, source)),
    }
}

/// Up to `max` messages from the head of `queue`, left in the queue: they
/// are taken with `basic.get` on one channel and never acknowledged, and
/// closing the channel returns them. While they are held (briefly) no
/// consumer gets them; a quorum queue counts the return as a delivery
/// attempt (`x-delivery-count`), so peek only at queues whose delivery
/// limit reading cannot reach, such as the exception queues.
pub async fn peek(
    connection: &Connection,
    queue: &str,
    max: usize,
) -> Result<Vec<Incoming>, Error> {
    let channel = topology::open(connection, "peeking at a queue").await?;
    let mut peeked = Vec::new();
    let mut failed = None;
    while peeked.len() < max {
        match channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
        {
            Ok(Some(message)) => {
                let delivery = message.delivery;
                peeked.push(Incoming::from_parts(
                    delivery.data,
                    &delivery.properties,
                    delivery.redelivered,
                    delivery.exchange.as_str(),
                    delivery.routing_key.as_str(),
                ));
            }
            Ok(None) => break,
            Err(source) => {
                failed = Some(not_found(queue, source));
                break;
            }
        }
    }
    // Unacknowledged: closing the channel puts every message back.
    topology::close(&channel).await;
    match failed {
        Some(error) => Err(error),
        None => Ok(peeked),
    }
}

/// A message taken from a queue with `basic.get`, unsettled. Dropping it
/// unsettled returns it to the queue (its channel closes).
#[derive(Debug)]
pub struct Fetched {
    message: Incoming,
    acker: Acker,
    channel: Channel,
}

impl Fetched {
    pub fn message(&self) -> &Incoming {
        &self.message
    }

    /// Acks (removes), requeues or dead-letters the message.
    pub async fn settle(self, settlement: Settlement) -> Result<(), Error> {
        let settled = settlement
            .apply(&self.acker)
            .await
            .map_err(Error::amqp("settling a fetched message"));
        topology::close(&self.channel).await;
        match settled? {
            true => Ok(()),
            false => Err(Error::Amqp {
                context: "settling a fetched message".into(),
                source: std::io::Error::other(
                    "its channel closed first; the broker has requeued it",
                )
                .into(),
            }),
        }
    }
}

/// Takes the next message of `queue`, if any, without settling it.
pub async fn get(connection: &Connection, queue: &str) -> Result<Option<Fetched>, Error> {
    let channel = topology::open(connection, "taking a message").await?;
    let got = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await;
    let message = match got {
        Ok(Some(message)) => message,
        Ok(None) => {
            topology::close(&channel).await;
            return Ok(None);
        }
        Err(source) => return Err(not_found(queue, source)),
    };
    let delivery = message.delivery;
    Ok(Some(Fetched {
        message: Incoming::from_parts(
            delivery.data,
            &delivery.properties,
            delivery.redelivered,
            delivery.exchange.as_str(),
            delivery.routing_key.as_str(),
        ),
        acker: delivery.acker,
        channel,
    }))
}

pub(crate) fn not_found(queue: &str, source: lapin::Error) -> Error {
    match source.kind() {
        ErrorKind::ProtocolError(e)
            if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) =>
        {
            Error::QueueNotFound {
                queue: queue.to_owned(),
            }
        }
        _ => Error::Amqp {
            context: format!("reading queue `{queue}`"),
            source,
        },
    }
}

/// A header value exactly as AMQP carries it, its type included, so a
/// message can be written out and published again unchanged (operators'
/// export and import). [`Meta`](crate::Meta) is the reading for stages;
/// this is the lossless one.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    F32(f32),
    F64(f64),
    Decimal {
        scale: u8,
        value: u32,
    },
    /// A short string (never sent by RabbitMQ, kept for completeness).
    ShortString(String),
    /// A long string: bytes, usually but not necessarily UTF-8.
    LongString(Vec<u8>),
    Array(Vec<FieldValue>),
    /// Seconds since the Unix epoch.
    Timestamp(u64),
    Table(BTreeMap<String, FieldValue>),
    Bytes(Vec<u8>),
    Void,
}

impl FieldValue {
    fn from_amqp(value: &AMQPValue) -> FieldValue {
        match value {
            AMQPValue::Boolean(v) => FieldValue::Bool(*v),
            AMQPValue::ShortShortInt(v) => FieldValue::I8(*v),
            AMQPValue::ShortShortUInt(v) => FieldValue::U8(*v),
            AMQPValue::ShortInt(v) => FieldValue::I16(*v),
            AMQPValue::ShortUInt(v) => FieldValue::U16(*v),
            AMQPValue::LongInt(v) => FieldValue::I32(*v),
            AMQPValue::LongUInt(v) => FieldValue::U32(*v),
            AMQPValue::LongLongInt(v) => FieldValue::I64(*v),
            AMQPValue::Float(v) => FieldValue::F32(*v),
            AMQPValue::Double(v) => FieldValue::F64(*v),
            AMQPValue::DecimalValue(d) => FieldValue::Decimal {
                scale: d.scale,
                value: d.value,
            },
            AMQPValue::ShortString(s) => FieldValue::ShortString(s.to_string()),
            AMQPValue::LongString(s) => FieldValue::LongString(s.as_bytes().to_vec()),
            AMQPValue::FieldArray(a) => {
                FieldValue::Array(a.as_slice().iter().map(FieldValue::from_amqp).collect())
            }
            AMQPValue::Timestamp(t) => FieldValue::Timestamp(*t),
            AMQPValue::FieldTable(t) => FieldValue::Table(table_from_amqp(t)),
            AMQPValue::ByteArray(b) => FieldValue::Bytes(b.as_slice().to_vec()),
            AMQPValue::Void => FieldValue::Void,
        }
    }

    fn to_amqp(&self) -> Result<AMQPValue, Error> {
        Ok(match self {
            FieldValue::Bool(v) => AMQPValue::Boolean(*v),
            FieldValue::I8(v) => AMQPValue::ShortShortInt(*v),
            FieldValue::U8(v) => AMQPValue::ShortShortUInt(*v),
            FieldValue::I16(v) => AMQPValue::ShortInt(*v),
            FieldValue::U16(v) => AMQPValue::ShortUInt(*v),
            FieldValue::I32(v) => AMQPValue::LongInt(*v),
            FieldValue::U32(v) => AMQPValue::LongUInt(*v),
            FieldValue::I64(v) => AMQPValue::LongLongInt(*v),
            FieldValue::F32(v) => AMQPValue::Float(*v),
            FieldValue::F64(v) => AMQPValue::Double(*v),
            FieldValue::Decimal { scale, value } => AMQPValue::DecimalValue(DecimalValue {
                scale: *scale,
                value: *value,
            }),
            FieldValue::ShortString(s) => AMQPValue::ShortString(short_string("header value", s)?),
            FieldValue::LongString(b) => AMQPValue::LongString(LongString::from(b.clone())),
            FieldValue::Array(a) => AMQPValue::FieldArray(FieldArray::from(
                a.iter()
                    .map(FieldValue::to_amqp)
                    .collect::<Result<Vec<_>, _>>()?,
            )),
            FieldValue::Timestamp(t) => AMQPValue::Timestamp(*t),
            FieldValue::Table(t) => AMQPValue::FieldTable(table_to_amqp(t)?),
            FieldValue::Bytes(b) => AMQPValue::ByteArray(ByteArray::from(b.clone())),
            FieldValue::Void => AMQPValue::Void,
        })
    }
}

fn table_from_amqp(table: &FieldTable) -> BTreeMap<String, FieldValue> {
    table
        .inner()
        .iter()
        .map(|(name, value)| (name.to_string(), FieldValue::from_amqp(value)))
        .collect()
}

fn table_to_amqp(table: &BTreeMap<String, FieldValue>) -> Result<FieldTable, Error> {
    let mut out = FieldTable::default();
    for (name, value) in table {
        out.insert(short_string("header name", name)?, value.to_amqp()?);
    }
    Ok(out)
}

/// Every AMQP basic property of a message, exactly as delivered: with
/// [`RawPublisher`] a message is published again unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawProperties {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// Every header, `x-death` and the broker's own included.
    pub headers: Option<BTreeMap<String, FieldValue>>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    pub expiration: Option<String>,
    pub message_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub timestamp: Option<u64>,
    /// The AMQP `type` property.
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub app_id: Option<String>,
    pub cluster_id: Option<String>,
}

impl RawProperties {
    fn from_amqp(p: &BasicProperties) -> RawProperties {
        let text = |s: &Option<ShortString>| s.as_ref().map(ToString::to_string);
        RawProperties {
            content_type: text(p.content_type()),
            content_encoding: text(p.content_encoding()),
            headers: p.headers().as_ref().map(table_from_amqp),
            delivery_mode: *p.delivery_mode(),
            priority: *p.priority(),
            correlation_id: text(p.correlation_id()),
            reply_to: text(p.reply_to()),
            expiration: text(p.expiration()),
            message_id: text(p.message_id()),
            timestamp: *p.timestamp(),
            kind: text(p.kind()),
            user_id: text(p.user_id()),
            app_id: text(p.app_id()),
            cluster_id: text(p.cluster_id()),
        }
    }

    fn to_amqp(&self) -> Result<BasicProperties, Error> {
        let mut p = BasicProperties::default();
        let short = |what: &str, value: &Option<String>| {
            value.as_deref().map(|v| short_string(what, v)).transpose()
        };
        if let Some(v) = short("content type", &self.content_type)? {
            p = p.with_content_type(v);
        }
        if let Some(v) = short("content encoding", &self.content_encoding)? {
            p = p.with_content_encoding(v);
        }
        if let Some(headers) = &self.headers {
            p = p.with_headers(table_to_amqp(headers)?);
        }
        if let Some(v) = self.delivery_mode {
            p = p.with_delivery_mode(v);
        }
        if let Some(v) = self.priority {
            p = p.with_priority(v);
        }
        if let Some(v) = short("correlation id", &self.correlation_id)? {
            p = p.with_correlation_id(v);
        }
        if let Some(v) = short("reply-to", &self.reply_to)? {
            p = p.with_reply_to(v);
        }
        if let Some(v) = short("expiration", &self.expiration)? {
            p = p.with_expiration(v);
        }
        if let Some(v) = short("message id", &self.message_id)? {
            p = p.with_message_id(v);
        }
        if let Some(v) = self.timestamp {
            p = p.with_timestamp(v);
        }
        if let Some(v) = short("type", &self.kind)? {
            p = p.with_type(v);
        }
        if let Some(v) = short("user id", &self.user_id)? {
            p = p.with_user_id(v);
        }
        if let Some(v) = short("app id", &self.app_id)? {
            p = p.with_app_id(v);
        }
        if let Some(v) = short("cluster id", &self.cluster_id)? {
            p = p.with_cluster_id(v);
        }
        Ok(p)
    }
}

/// A message looked at without being consumed: its decoded form and every
/// property exactly.
#[derive(Debug, Clone)]
pub struct Browsed {
    pub message: Incoming,
    pub properties: RawProperties,
}

/// Up to `limit` messages of `queue`, oldest first, without consuming
/// them: taken with `basic.get` on one channel and all returned when it
/// closes. The broker marks them redelivered (a quorum queue also counts
/// the delivery in `x-delivery-count`); while they are held, other readers
/// do not see them.
pub async fn browse(
    connection: &Connection,
    queue: &str,
    limit: usize,
) -> Result<Vec<Browsed>, Error> {
    let cursor = Cursor::open(connection, queue).await?;
    let mut seen = Vec::new();
    let result = async {
        while seen.len() < limit {
            match cursor.next().await? {
                Some(taken) => seen.push(Browsed {
                    message: taken.message,
                    properties: taken.properties,
                }),
                None => break,
            }
        }
        Ok(())
    }
    .await;
    cursor.close().await;
    result.map(|()| seen)
}

/// Takes the messages of one queue one by one on one channel. Each stays
/// unacknowledged until acked or returned; whatever is still held when the
/// cursor closes (or its process dies) goes back to the queue.
#[derive(Debug)]
pub struct Cursor {
    channel: Channel,
    queue: String,
}

/// A message held by a [`Cursor`].
#[derive(Debug)]
pub struct Taken {
    message: Incoming,
    properties: RawProperties,
    acker: Acker,
}

impl Taken {
    pub fn message(&self) -> &Incoming {
        &self.message
    }

    pub fn properties(&self) -> &RawProperties {
        &self.properties
    }

    /// Removes the message from its queue.
    pub async fn ack(&self) -> Result<(), Error> {
        self.settle(Settlement::Ack).await
    }

    /// Gives the message back to its queue now rather than at the close.
    pub async fn release(&self) -> Result<(), Error> {
        self.settle(Settlement::Requeue).await
    }

    async fn settle(&self, settlement: Settlement) -> Result<(), Error> {
        let settled = settlement
            .apply(&self.acker)
            .await
            .map_err(Error::amqp("settling a held message"))?;
        if settled {
            Ok(())
        } else {
            Err(Error::Amqp {
                context: "settling a held message".into(),
                source: std::io::Error::other(
                    "its channel closed first; the broker has requeued it",
                )
                .into(),
            })
        }
    }
}

impl Cursor {
    pub async fn open(connection: &Connection, queue: &str) -> Result<Cursor, Error> {
        let channel = topology::open(connection, "reading a queue").await?;
        Ok(Cursor {
            channel,
            queue: queue.to_owned(),
        })
    }

    /// The next message not yet held, or `None` when there is none.
    pub async fn next(&self) -> Result<Option<Taken>, Error> {
        let got = self
            .channel
            .basic_get(
                self.queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .map_err(|source| not_found(&self.queue, source))?;
        Ok(got.map(|message| {
            let delivery = message.delivery;
            Taken {
                message: Incoming::from_parts(
                    delivery.data,
                    &delivery.properties,
                    delivery.redelivered,
                    delivery.exchange.as_str(),
                    delivery.routing_key.as_str(),
                ),
                properties: RawProperties::from_amqp(&delivery.properties),
                acker: delivery.acker,
            }
        }))
    }

    /// Closes the channel: every message still held returns to the queue.
    pub async fn close(self) {
        topology::close(&self.channel).await;
    }
}

/// Publishes messages with exactly the given properties, each awaited to
/// its confirm, one at a time on one channel (so a returned message is
/// never paired with the wrong publish): for restoring exported messages.
#[derive(Debug)]
pub struct RawPublisher {
    channel: Channel,
}

impl RawPublisher {
    pub async fn open(connection: &Connection) -> Result<RawPublisher, Error> {
        let channel = topology::open(connection, "restoring messages").await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(Error::amqp("enabling publisher confirms"))?;
        Ok(RawPublisher { channel })
    }

    /// Publishes (mandatory) and waits for the broker's confirm; errors as
    /// [`crate::Publisher::publish`].
    pub async fn publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: &RawProperties,
    ) -> Result<(), Error> {
        let context = || format!("publishing to `{exchange}` with routing key `{routing_key}`");
        let confirm = self
            .channel
            .basic_publish(
                short_string("exchange", exchange)?,
                short_string("routing key", routing_key)?,
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties.to_amqp()?,
            )
            .await
            .map_err(Error::amqp(context()))?;
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| Error::ConfirmTimeout {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
                after: CONFIRM_TIMEOUT,
            })?
            .map_err(Error::amqp(context()))?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(Error::Unroutable {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            }),
            Confirmation::Nack(_) | Confirmation::NotRequested => Err(Error::Nacked {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            }),
        }
    }

    pub async fn close(self) {
        topology::close(&self.channel).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> BTreeMap<String, FieldValue> {
        let mut inner = BTreeMap::new();
        inner.insert("count".to_owned(), FieldValue::I64(2));
        let values = [
            FieldValue::Bool(true),
            FieldValue::I8(-1),
            FieldValue::U8(1),
            FieldValue::I16(-300),
            FieldValue::U16(300),
            FieldValue::I32(-70_000),
            FieldValue::U32(70_000),
            FieldValue::I64(-5_000_000_000),
            FieldValue::F32(1.5),
            FieldValue::F64(-2.25),
            FieldValue::Decimal {
                scale: 2,
                value: 1234,
            },
            FieldValue::ShortString("short".into()),
            FieldValue::LongString(vec![0xff, 0x00, b'a']),
            FieldValue::Array(vec![FieldValue::Table(inner.clone()), FieldValue::Void]),
            FieldValue::Timestamp(1_700_000_000),
            FieldValue::Table(inner),
            FieldValue::Bytes(vec![1, 2, 3]),
            FieldValue::Void,
        ];
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("h{i:02}"), v))
            .collect()
    }

    #[test]
    fn raw_properties_round_trip_through_amqp_exactly() {
        let raw = RawProperties {
            content_type: Some("application/json".into()),
            content_encoding: Some("identity".into()),
            headers: Some(every_kind()),
            delivery_mode: Some(2),
            priority: Some(5),
            correlation_id: Some("c-1".into()),
            reply_to: Some("r".into()),
            expiration: Some("60000".into()),
            message_id: Some("m-1".into()),
            timestamp: Some(1_700_000_000),
            kind: Some("t".into()),
            user_id: Some("guest".into()),
            app_id: Some("a".into()),
            cluster_id: Some("c".into()),
        };
        let amqp = raw.to_amqp().unwrap();
        assert_eq!(RawProperties::from_amqp(&amqp), raw);
        assert_eq!(
            RawProperties::from_amqp(&BasicProperties::default()),
            RawProperties::default()
        );
    }

    #[test]
    fn an_overlong_short_string_is_refused_not_a_panic() {
        let raw = RawProperties {
            message_id: Some("m".repeat(300)),
            ..RawProperties::default()
        };
        assert!(raw.to_amqp().unwrap_err().to_string().contains("255"));
    }
}
