//! Messages in and out, and what a handler decides about one it received.

use crate::headers::{self, Death, Meta};
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use lapin::{Acker, BasicProperties};

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// `""` is the default exchange, which routes by queue name.
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub meta: Meta,
}

impl Outgoing {
    /// A message straight to one queue, through the default exchange.
    pub fn to_queue(queue: &str, body: Vec<u8>, meta: Meta) -> Outgoing {
        Outgoing {
            exchange: String::new(),
            routing_key: queue.to_owned(),
            body,
            meta,
        }
    }
}

/// A delivered message. The delivery tag stays with the consumer, which
/// settles the message once the handler has returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    body: Vec<u8>,
    meta: Meta,
    redelivered: bool,
    exchange: String,
    routing_key: String,
    deaths: Vec<Death>,
    delivery_count: Option<u64>,
}

impl Incoming {
    /// A message as if delivered for the first time: for handler tests.
    pub fn new(body: Vec<u8>, meta: Meta) -> Incoming {
        Incoming {
            body,
            meta,
            redelivered: false,
            exchange: String::new(),
            routing_key: String::new(),
            deaths: Vec::new(),
            delivery_count: None,
        }
    }

    pub(crate) fn from_parts(
        body: Vec<u8>,
        properties: &BasicProperties,
        redelivered: bool,
        exchange: &str,
        routing_key: &str,
    ) -> Incoming {
        Incoming {
            body,
            meta: Meta::from_properties(properties),
            redelivered,
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            deaths: headers::deaths(properties),
            delivery_count: headers::delivery_count(properties),
        }
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Body and metadata, to build a fresh copy (never re-publish `x-death`).
    pub fn into_parts(self) -> (Vec<u8>, Meta) {
        (self.body, self.meta)
    }

    /// The broker delivered this message before, to this or another consumer.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// The exchange it was published to (`""` for the default exchange).
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    pub fn routing_key(&self) -> &str {
        &self.routing_key
    }

    /// The most recent dead-lettering of this message, if the broker
    /// dead-lettered it (rejected, expired, delivery limit).
    pub fn latest_death(&self) -> Option<&Death> {
        self.deaths.first()
    }

    /// Every `x-death` entry, most recent first.
    pub fn deaths(&self) -> &[Death] {
        &self.deaths
    }

    /// Earlier unsuccessful deliveries from this quorum queue (its
    /// `x-delivery-count`); `None` on a first delivery.
    pub fn delivery_count(&self) -> Option<u64> {
        self.delivery_count
    }
}

/// What happens to a delivered message after its handler returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Settlement {
    /// Done: everything it led to is published and confirmed.
    Ack,
    /// Could not process it now: back to the queue. Counts towards the
    /// queue's delivery limit, past which the broker dead-letters it.
    Requeue,
    /// Dead-letter it to the stage's exception queue now.
    Reject,
}

impl Settlement {
    /// Sends the settlement. `Ok(false)`: the channel is gone, so the
    /// broker requeues the message by itself.
    pub(crate) async fn apply(self, acker: &Acker) -> Result<bool, lapin::Error> {
        match self {
            Settlement::Ack => acker.ack(BasicAckOptions::default()).await,
            // A worked delivery that failed: `basic.reject`, which every
            // RabbitMQ counts towards the quorum queue's delivery limit
            // (from 4.3 on, a `basic.nack` with requeue does not, and a
            // poison message would be redelivered forever).
            Settlement::Requeue => acker.reject(BasicRejectOptions { requeue: true }).await,
            Settlement::Reject => acker.reject(BasicRejectOptions { requeue: false }).await,
        }
    }
}
