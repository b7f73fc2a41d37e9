//! # orderflow-broker
//!
//! RabbitMQ for orderflow, and the only crate of the workspace that speaks
//! AMQP (through lapin). Other crates use the names, the topology, [`Meta`],
//! the [`Publisher`] and the [`Consumer`] from here.
//!
//! # Layout
//! - [`names`]: every exchange and queue name, under a namespace prefix.
//! - [`topology`]: [`TopologySpec`] from the policy (quorum work, exception
//!   and per-tier delay queues, the archive and events streams) and its idempotent [`declare`]; an
//!   incompatible existing queue is an [`Error::TopologyConflict`].
//! - [`headers`]: [`Meta`], the `orderflow-*` headers and AMQP properties,
//!   and the broker's `x-death` entries ([`Death`]).
//! - `message`: [`Outgoing`], [`Incoming`] and [`Settlement`].
//! - `connection`: [`connect`] to the first node of a URL list that
//!   answers, with [`Error::Unreachable`] for start-up checks; [`node_urls`].
//! - `publisher`: [`Publisher`], persistent mandatory publishes awaited to
//!   their confirm; unroutable and nacked messages are errors.
//! - `confirms`: one task per publishing channel that answers its pipelined
//!   publishes, pairing returned messages with the publish they belong to.
//! - `consumer`: [`Consumer::run`], the manual-ack loop with bounded
//!   concurrency, graceful shutdown and reconnection with backoff.
//! - [`admin`]: queue depth and single-message `basic.get`, for operator
//!   tools and tests.
//! - [`stream`]: RabbitMQ streams (the archive, the customer events):
//!   [`stream::StreamSpec`] with its retention, [`stream::read`] from an
//!   [`stream::Offset`]; writes are confirmed publishes.
//! - [`sockets`]: which connections processes hold to the broker, for the
//!   tools that drop a fleet's connections on purpose.
//! - [`rabbitmqctl`]: the node's client connections (listed, closed) and
//!   its queues' ready and unacknowledged counts, for tools and tests.
//! - `error`: [`Error`] and [`chain`] for logging its causes.

pub mod admin;
mod confirms;
mod connection;
mod consumer;
mod error;
pub mod headers;
mod message;
pub mod names;
mod publisher;
pub mod rabbitmqctl;
pub mod sockets;
pub mod stream;
pub mod topology;

pub use connection::{CLOSE_WITHIN, close, connect, connect_named, node_urls, without_password};
pub use consumer::{Consumer, ConsumerConfig, Handler};
pub use error::{Error, chain};
pub use headers::{Death, Meta};
pub use message::{Incoming, Outgoing, Settlement};
pub use names::Names;
pub use publisher::Publisher;
pub use topology::{TopologySpec, declare};

/// The broker connection, for [`declare`] and the [`admin`] calls; other
/// crates hold it without depending on lapin.
pub use lapin::Connection;
