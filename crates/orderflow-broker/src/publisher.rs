//! Publishing with publisher confirms.
//!
//! Each publish is persistent and mandatory, and returns only once the
//! broker has confirmed it, so a caller can ack its input afterwards.
//!
//! Why one channel with many publishes in flight, and a task that settles
//! them: the broker confirms a pipelined channel's publishes in batches
//! (one `basic.ack` with `multiple` for many), which costs it far less
//! than a confirm per channel round trip. But lapin hands a returned
//! (unroutable) message to whichever confirm of the batch it resolves
//! first, not to the publish it belongs to. So the confirms of a channel
//! are settled by one task ([`settle`]) that takes every confirm the broker
//! has resolved so far, collects the returned messages they carry, and only
//! then decides each publish: unroutable when a returned message matches
//! its exchange, routing key and message id. The broker sends a return
//! before the confirm of the same publish, so when a publish's confirm is
//! seen, the confirm carrying its return has been resolved too.
//!
//! The publisher has its own connection (the broker blocks publishing
//! connections under a resource alarm; acks on a consuming connection must
//! not wait for that) and reconnects on the next publish after it is lost.

use crate::connection::connect_named;
use crate::headers::short_string;
use crate::topology;
use crate::{Error, Meta, Outgoing};
use futures_util::future::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection, PublisherConfirm};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

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
    url: String,
    name: String,
    lane: tokio::sync::Mutex<Option<Lane>>,
}

/// The open connection and its publishing channel, with the task that
/// settles the channel's confirms.
struct Lane {
    connection: Connection,
    channel: Channel,
    to_settle: mpsc::UnboundedSender<Pending>,
    counters: Arc<Counters>,
}

/// Shared between the publishing tasks and the settling task.
#[derive(Default)]
struct Counters {
    /// Numbers publishes in the order they were sent; see [`Returned`].
    sequence: AtomicU64,
    /// Publishes sent and not settled yet, counted before the send so the
    /// settling task never forgets a return a publish still needs.
    in_flight: AtomicUsize,
}

/// Which publish a returned message answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Route {
    exchange: String,
    routing_key: String,
    message_id: Option<String>,
}

/// A sent publish waiting for its confirm.
struct Pending {
    route: Route,
    sequence: u64,
    confirm: PublisherConfirm,
    reply: oneshot::Sender<Outcome>,
}

enum Outcome {
    Stored,
    Unroutable,
    Nacked,
    Failed(lapin::Error),
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
                url: url.to_owned(),
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
        let (channel, to_settle, counters) = self.lane().await?;
        let context = || format!("publishing to `{exchange}` with routing key `{routing_key}`");

        // Numbered and counted before the send: see `Returned`.
        counters.in_flight.fetch_add(1, Ordering::SeqCst);
        let sequence = counters.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        let sent = channel
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
            .await;
        let confirm = match sent {
            Ok(confirm) => confirm,
            Err(err) => {
                counters.in_flight.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::amqp(context())(err));
            }
        };
        let (reply, outcome) = oneshot::channel();
        let pending = Pending {
            route: Route {
                exchange: exchange.clone(),
                routing_key: routing_key.clone(),
                message_id: meta.message_id,
            },
            sequence,
            confirm,
            reply,
        };
        // The settling task outlives every sender of its lane, so a failed
        // send (and a reply dropped unanswered) means it died: the confirm
        // is lost, and whether the broker stored the message is unknown.
        let lost = || {
            Error::amqp(context())(lapin::Error::from(lapin::ErrorKind::InvalidChannelState(
                lapin::ChannelState::Error,
                "settling publisher confirms",
            )))
        };
        if to_settle.send(pending).is_err() {
            counters.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(lost());
        }
        let outcome = match tokio::time::timeout(CONFIRM_TIMEOUT, outcome).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => return Err(lost()),
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
    /// was lost. One task reconnects while the others wait for it.
    async fn lane(
        &self,
    ) -> Result<(Channel, mpsc::UnboundedSender<Pending>, Arc<Counters>), Error> {
        let mut guard = self.inner.lane.lock().await;
        if let Some(lane) = guard.as_ref()
            && lane.channel.status().connected()
        {
            return Ok((
                lane.channel.clone(),
                lane.to_settle.clone(),
                lane.counters.clone(),
            ));
        }
        let connection = match guard.take() {
            Some(lane) if lane.connection.status().connected() => lane.connection,
            _ => connect_named(&self.inner.url, &self.inner.name).await?,
        };
        let channel = topology::open(&connection, "publishing").await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(Error::amqp("enabling publisher confirms"))?;
        let (to_settle, pending) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        tokio::spawn(settle(pending, counters.clone()));
        let lane = guard.insert(Lane {
            connection,
            channel,
            to_settle,
            counters,
        });
        Ok((
            lane.channel.clone(),
            lane.to_settle.clone(),
            lane.counters.clone(),
        ))
    }
}

/// Returned messages seen on a channel, by route, each with the highest
/// publish number sent when it was seen. A publish is unroutable when its
/// route was returned with a number at or above its own: the returned
/// publish was sent before its return was seen, so its number is covered.
/// A later publish on the same route gets a fresh answer. Cleared whenever
/// nothing is in flight.
#[derive(Default)]
struct Returned(HashMap<Route, u64>);

impl Returned {
    fn record(&mut self, confirmation: &Result<Confirmation, lapin::Error>, sent: u64) {
        if let Ok(Confirmation::Ack(Some(message)) | Confirmation::Nack(Some(message))) =
            confirmation
        {
            let delivery = &message.delivery;
            let route = Route {
                exchange: delivery.exchange.to_string(),
                routing_key: delivery.routing_key.to_string(),
                message_id: delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(ToString::to_string),
            };
            self.0.insert(route, sent);
        }
    }

    fn covers(&self, route: &Route, sequence: u64) -> bool {
        self.0.get(route).is_some_and(|&sent| sent >= sequence)
    }
}

/// Settles one channel's confirms until the channel's lane is dropped and
/// every confirm has been answered.
async fn settle(mut incoming: mpsc::UnboundedReceiver<Pending>, counters: Arc<Counters>) {
    let mut waiting = FuturesUnordered::new();
    let mut returned = Returned::default();
    loop {
        let first = tokio::select! {
            Some(pending) = incoming.recv() => {
                let Pending { route, sequence, confirm, reply } = pending;
                waiting.push(confirm.map(move |confirmation| (route, sequence, reply, confirmation)));
                continue;
            }
            Some(first) = waiting.next(), if !waiting.is_empty() => first,
            else => return,
        };
        // Everything resolved by now, so the confirm carrying a return is
        // seen no later than the publish it belongs to.
        let mut ready = vec![first];
        while let Some(Some(next)) = waiting.next().now_or_never() {
            ready.push(next);
        }
        let sent = counters.sequence.load(Ordering::SeqCst);
        for (_, _, _, confirmation) in &ready {
            returned.record(confirmation, sent);
        }
        for (route, sequence, reply, confirmation) in ready {
            let outcome = match confirmation {
                Err(err) => Outcome::Failed(err),
                Ok(Confirmation::Ack(_)) if returned.covers(&route, sequence) => {
                    Outcome::Unroutable
                }
                Ok(Confirmation::Ack(_)) => Outcome::Stored,
                // Every channel is in confirm mode, so NotRequested cannot
                // happen; treat it as "not stored" rather than as success.
                Ok(Confirmation::Nack(_) | Confirmation::NotRequested) => Outcome::Nacked,
            };
            // The publisher may have stopped waiting (confirm timeout).
            let _ = reply.send(outcome);
            if counters.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                returned.0.clear();
            }
        }
    }
}
