//! Publishing with publisher confirms.
//!
//! Each publish is persistent and mandatory, and returns only once the
//! broker has confirmed it, so a caller can ack its input afterwards.
//!
//! Every publish of a process goes on one channel, many in flight at once:
//! the broker confirms them in batches, which costs it far less than a
//! confirm per channel round trip. Pairing each confirm (and each returned,
//! unroutable message) with its publish is the job of [`crate::confirms`].
//!
//! The publisher has its own connection (the broker blocks publishing
//! connections under a resource alarm; acks on a consuming connection must
//! not wait for that) and reconnects on the next publish after it is lost,
//! to the next node of the broker's list. A channel that keeps being nacked
//! (a quorum queue's leader election on RabbitMQ 3.10) is replaced by a
//! fresh one on the same connection.

use crate::confirms::{Confirms, Outcome, Route};
use crate::connection::Nodes;
use crate::headers::short_string;
use crate::topology;
use crate::{Error, Meta, Outgoing};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Connection};
use std::sync::Arc;
use std::time::Duration;

/// How long a publish waits for the broker's confirm. Quorum queues confirm
/// in milliseconds; this only bounds a broker that has stopped answering
/// (a resource alarm blocks publishers without closing them).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// A confirming publisher. Cheap to clone; clones share the connection and
/// channel, and any number of tasks may publish at once.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    nodes: Nodes,
    name: String,
    lane: tokio::sync::Mutex<Option<Lane>>,
}

/// The open connection and its publishing channel, with the task that
/// settles the channel's confirms.
struct Lane {
    connection: Connection,
    channel: Channel,
    confirms: Confirms,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connects now, so an unreachable broker shows at start-up.
    pub async fn connect(url: &str, name: &str) -> Result<Publisher, Error> {
        let publisher = Publisher::lazy(url, name);
        publisher.lane().await?;
        Ok(publisher)
    }

    /// Connects on the first publish (and again after a lost connection).
    pub fn lazy(url: &str, name: &str) -> Publisher {
        Publisher {
            inner: Arc::new(Inner {
                nodes: Nodes::new(url),
                name: name.to_owned(),
                lane: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Publishes and waits for the broker's confirm.
    ///
    /// `Ok` means the broker stored the message in every queue it routes
    /// to. [`Error::Nacked`]: refused; [`Error::Unroutable`]: routed to no
    /// queue; [`Error::ConfirmTimeout`] or a connection error: unknown, so
    /// do not ack the input (its redelivery republishes; consumers dedupe).
    pub async fn publish(&self, message: Outgoing) -> Result<(), Error> {
        let Outgoing {
            exchange,
            routing_key,
            body,
            meta,
        } = message;
        let properties = meta.to_properties()?;
        let exchange_name = short_string("exchange", &exchange)?;
        let key = short_string("routing key", &routing_key)?;
        let (channel, confirms) = self.lane().await?;
        let context = || format!("publishing to `{exchange}` with routing key `{routing_key}`");

        let (asker, outcome) = confirms.number(Route {
            exchange: exchange.clone(),
            routing_key: routing_key.clone(),
            message_id: meta.message_id,
        });
        // Sent by a task of its own, which this caller cannot cancel: a
        // confirm dropped half-way could have carried another publish's
        // return (see `confirms`).
        tokio::spawn(async move {
            let options = BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            };
            let sent = channel
                .basic_publish(exchange_name, key, options, &body, properties)
                .await;
            confirms.hand_over(asker, sent);
        });
        let outcome = match tokio::time::timeout(CONFIRM_TIMEOUT, outcome).await {
            Ok(Ok(outcome)) => outcome,
            // The settling task died (it outlives every publish otherwise):
            // whether the broker stored the message is unknown.
            Ok(Err(_)) => {
                return Err(Error::amqp(context())(lapin::Error::from(
                    lapin::ErrorKind::InvalidChannelState(
                        lapin::ChannelState::Error,
                        "settling publisher confirms",
                    ),
                )));
            }
            Err(_) => {
                return Err(Error::ConfirmTimeout {
                    exchange,
                    routing_key,
                    after: CONFIRM_TIMEOUT,
                });
            }
        };
        match outcome {
            Outcome::Stored => Ok(()),
            Outcome::Unroutable => Err(Error::Unroutable {
                exchange,
                routing_key,
            }),
            Outcome::Nacked => Err(Error::Nacked {
                exchange,
                routing_key,
            }),
            Outcome::Failed(err) => Err(Error::amqp(context())(err)),
        }
    }

    /// Publishes straight to one queue through the default exchange.
    pub async fn to_queue(&self, queue: &str, body: Vec<u8>, meta: Meta) -> Result<(), Error> {
        self.publish(Outgoing::to_queue(queue, body, meta)).await
    }

    /// Closes the connection; in-flight publishes fail.
    pub async fn close(&self) {
        if let Some(lane) = self.inner.lane.lock().await.take()
            && lane.connection.status().connected()
        {
            let _ = lane.connection.close(200, "publisher closed".into()).await;
        }
    }

    /// The open channel, reconnecting first if the connection or channel
    /// was lost, and opening a fresh channel if this one was worn out by
    /// nacks. One task reconnects while the others wait for it.
    async fn lane(&self) -> Result<(Channel, Confirms), Error> {
        let mut guard = self.inner.lane.lock().await;
        if let Some(lane) = guard.as_ref()
            && lane.channel.status().connected()
            && !lane.confirms.worn_out()
        {
            return Ok((lane.channel.clone(), lane.confirms.clone()));
        }
        let connection = match guard.take() {
            Some(lane) if lane.connection.status().connected() => {
                if lane.confirms.worn_out() {
                    tracing::warn!(
                        publisher = %self.inner.name,
                        "the publishing channel keeps being nacked; reopening it"
                    );
                    retire(lane.channel);
                }
                lane.connection
            }
            lost => {
                if lost.is_some() {
                    self.inner.nodes.lost();
                }
                self.inner.nodes.connect(&self.inner.name).await?
            }
        };
        let channel = topology::open(&connection, "publishing").await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(Error::amqp("enabling publisher confirms"))?;
        let lane = guard.insert(Lane {
            connection,
            channel,
            confirms: Confirms::start(),
        });
        Ok((lane.channel.clone(), lane.confirms.clone()))
    }
}

/// Closes a worn-out channel once every publish still on it has had its
/// confirm or timed out waiting.
fn retire(channel: Channel) {
    tokio::spawn(async move {
        tokio::time::sleep(CONFIRM_TIMEOUT).await;
        topology::close(&channel).await;
    });
}
