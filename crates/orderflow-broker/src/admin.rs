//! Looking into queues: depth, and taking single messages (for operators'
//! tools and tests, which must not speak AMQP themselves).

use crate::topology;
use crate::{Error, Incoming, Settlement};
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Connection, ErrorKind};

/// Messages ready in `queue` (not counting those delivered and unacked).
pub async fn queue_depth(connection: &Connection, queue: &str) -> Result<u32, Error> {
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
        Ok(declared) => Ok(declared.message_count()),
        Err(source) => Err(not_found(queue, source)),
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

fn not_found(queue: &str, source: lapin::Error) -> Error {
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
