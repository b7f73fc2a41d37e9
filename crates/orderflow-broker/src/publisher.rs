//! Publishing with publisher confirms.
//!
//! Each publish is persistent and mandatory, and returns only once the
//! broker has confirmed it, so a caller can ack its input afterwards.
//!
//! Why a pool of channels, one publish in flight on each: the broker returns
//! an unroutable message just before acking it, and lapin pairs returned
//! messages with acks by arrival order. With several publishes in flight on
//! one channel, a multiple-ack could hand the returned message to the wrong
//! publish, which would then report `Unroutable` while the lost one reported
//! success. One publish per channel keeps the pairing exact.
//!
//! The publisher has its own connection (the broker blocks publishing
//! connections under a resource alarm; acks on a consuming connection must
//! not wait for that) and reconnects on the next publish after it is lost.

use crate::connection::connect_named;
use crate::headers::short_string;
use crate::topology;
use crate::{Error, Meta, Outgoing};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a publish waits for the broker's confirm. Quorum queues confirm
/// in milliseconds; this only bounds a broker that has stopped answering
/// (a resource alarm blocks publishers without closing them).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// A confirming publisher. Cheap to clone; clones share the connection and
/// channels, and any number of tasks may publish at once.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    name: String,
    connection: tokio::sync::Mutex<Option<Connection>>,
    idle: Mutex<Vec<Channel>>,
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
        let channel = publisher.open_channel().await?;
        publisher.checkin(channel);
        Ok(publisher)
    }

    /// Connects on the first publish (and again after a lost connection).
    pub fn lazy(url: &str, name: &str) -> Publisher {
        Publisher {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                name: name.to_owned(),
                connection: tokio::sync::Mutex::new(None),
                idle: Mutex::new(Vec::new()),
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
        let channel = self.checkout().await?;
        let context = || format!("publishing to `{exchange}` with routing key `{routing_key}`");
        let confirm = channel
            .basic_publish(
                exchange_name,
                key,
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &body,
                properties,
            )
            .await
            .map_err(Error::amqp(context()))?;
        let confirmation = match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Ok(confirmation) => confirmation.map_err(Error::amqp(context()))?,
            // The channel still owes this confirm: do not reuse it.
            Err(_) => {
                return Err(Error::ConfirmTimeout {
                    exchange,
                    routing_key,
                    after: CONFIRM_TIMEOUT,
                });
            }
        };
        self.checkin(channel);
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(Error::Unroutable {
                exchange,
                routing_key,
            }),
            // Every channel is in confirm mode, so NotRequested cannot
            // happen; treat it as "not stored" rather than as success.
            Confirmation::Nack(_) | Confirmation::NotRequested => Err(Error::Nacked {
                exchange,
                routing_key,
            }),
        }
    }

    /// Publishes straight to one queue through the default exchange.
    pub async fn to_queue(&self, queue: &str, body: Vec<u8>, meta: Meta) -> Result<(), Error> {
        self.publish(Outgoing::to_queue(queue, body, meta)).await
    }

    /// Closes the connection; in-flight publishes fail.
    pub async fn close(&self) {
        self.idle().clear();
        if let Some(connection) = self.inner.connection.lock().await.take()
            && connection.status().connected()
        {
            let _ = connection.close(200, "publisher closed".into()).await;
        }
    }

    /// An idle open channel, or a new one.
    async fn checkout(&self) -> Result<Channel, Error> {
        while let Some(channel) = self.idle().pop() {
            if channel.status().connected() {
                return Ok(channel);
            }
        }
        self.open_channel().await
    }

    /// A new channel in confirm mode, reconnecting first if the connection
    /// was lost. One task reconnects while the others wait for it.
    async fn open_channel(&self) -> Result<Channel, Error> {
        let mut guard = self.inner.connection.lock().await;
        let connection = match guard.take() {
            Some(connection) if connection.status().connected() => connection,
            _ => {
                self.idle().clear();
                connect_named(&self.inner.url, &self.inner.name).await?
            }
        };
        let connection = guard.insert(connection);
        let channel = topology::open(connection, "publishing").await?;
        drop(guard);
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(Error::amqp("enabling publisher confirms"))?;
        Ok(channel)
    }

    fn checkin(&self, channel: Channel) {
        if channel.status().connected() {
            self.idle().push(channel);
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Channel>> {
        // A panic while holding this lock leaves a valid Vec behind.
        self.inner.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}
