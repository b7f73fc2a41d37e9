//! The consume loop every stage worker runs.
//!
//! Manual acks, `basic.qos` prefetch, at most `concurrency` handlers at once,
//! and each message settled only after its handler has returned — so a
//! handler publishes (and awaits the confirm of) everything a message leads
//! to before the message is acked. A lost connection or channel is
//! re-established with jittered exponential backoff, forever, until shutdown,
//! on the next node of the broker's list (the topology declared again); the
//! broker redelivers whatever was unacked, and handlers are idempotent.
//!
//! A consumer can be paused ([`Consumer::run_pausable`]): while its watch
//! says so it cancels its AMQP consumer and closes its session the way a
//! shutdown does — in-flight handlers finish and are settled, and so are
//! the deliveries already prefetched (worked, not handed back: on a quorum
//! queue a message handed back counts towards the delivery limit) — and
//! consumes again once resumed. Messages wait in the queue meanwhile.

use crate::connection::Nodes;
use crate::error::chain;
use crate::topology::{self, TopologySpec};
use crate::{Error, Incoming, Publisher, Settlement};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures_lite::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Connection};
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

/// The first reconnect waits about this long...
const RECONNECT_MIN: Duration = Duration::from_millis(100);
/// ...doubling up to this, plus up to as much again of jitter.
const RECONNECT_MAX: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    pub amqp_url: String,
    pub queue: String,
    /// Unacked deliveries the broker may send ahead (`basic.qos`).
    pub prefetch: u16,
    /// Handlers running at once.
    pub concurrency: usize,
    /// How long in-flight handlers may finish after shutdown (or after the
    /// connection is lost) before they are abandoned unsettled.
    pub shutdown_grace: Duration,
    /// Names the consumer and its connections in `rabbitmqctl`.
    pub consumer_tag_prefix: String,
}

/// Processes one delivery. Must be idempotent: a message can arrive again
/// after a crash, a lost connection or a requeue.
pub trait Handler: Send + Sync + 'static {
    /// Everything the message leads to is published through `publisher`
    /// (confirmed) before returning [`Settlement::Ack`]. A panic counts as
    /// [`Settlement::Requeue`].
    fn handle(
        &self,
        delivery: Incoming,
        publisher: &Publisher,
    ) -> impl Future<Output = Settlement> + Send;
}

/// A shared handler, so the caller can keep looking at it.
impl<H: Handler> Handler for Arc<H> {
    fn handle(
        &self,
        delivery: Incoming,
        publisher: &Publisher,
    ) -> impl Future<Output = Settlement> + Send {
        H::handle(self, delivery, publisher)
    }
}

/// Runs a consumer until `shutdown` is cancelled.
#[derive(Debug)]
pub struct Consumer;

impl Consumer {
    /// Consumes `config.queue`, declaring `spec` on every (re)connect.
    ///
    /// Returns `Ok` after a graceful shutdown: consuming stops, in-flight
    /// handlers get `shutdown_grace` to finish and be settled, then the
    /// channel closes and the broker requeues whatever was not settled.
    /// Returns `Err` only for what reconnecting cannot fix: a topology
    /// conflict or an invalid configuration.
    pub async fn run<H: Handler>(
        config: ConsumerConfig,
        spec: TopologySpec,
        handler: H,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let publisher = Publisher::lazy(
            &config.amqp_url,
            &format!("{}.publisher", config.consumer_tag_prefix),
        );
        let result = Consumer::run_with(config, spec, handler, &publisher, shutdown).await;
        publisher.close().await;
        result
    }

    /// As [`Consumer::run`], publishing through `publisher`: several
    /// consumers of one process can share its connection.
    pub async fn run_with<H: Handler>(
        config: ConsumerConfig,
        spec: TopologySpec,
        handler: H,
        publisher: &Publisher,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        // Its sender gone, the watch stays at "not paused" for good.
        let (_, never_paused) = watch::channel(false);
        Consumer::run_with_pause(config, spec, handler, publisher, shutdown, never_paused).await
    }

    /// As [`Consumer::run`], taking no deliveries while `paused` holds
    /// `true`: the consumer is cancelled (in-flight handlers finish and
    /// are settled, prefetched messages return to the queue) and consumes
    /// again when `paused` turns `false`.
    pub async fn run_pausable<H: Handler>(
        config: ConsumerConfig,
        spec: TopologySpec,
        handler: H,
        shutdown: CancellationToken,
        paused: watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let publisher = Publisher::lazy(
            &config.amqp_url,
            &format!("{}.publisher", config.consumer_tag_prefix),
        );
        let result =
            Consumer::run_with_pause(config, spec, handler, &publisher, shutdown, paused).await;
        publisher.close().await;
        result
    }

    /// As [`Consumer::run_pausable`], publishing through `publisher`.
    pub async fn run_with_pause<H: Handler>(
        config: ConsumerConfig,
        spec: TopologySpec,
        handler: H,
        publisher: &Publisher,
        shutdown: CancellationToken,
        mut paused: watch::Receiver<bool>,
    ) -> Result<(), Error> {
        check(&config)?;
        let handler = Arc::new(handler);
        reconnecting(&config, &spec, &handler, publisher, &shutdown, &mut paused).await
    }
}

/// Resolves once `paused` says `true`; never, if its sender is gone while
/// it says `false`.
async fn until_paused(paused: &mut watch::Receiver<bool>) {
    if paused.wait_for(|paused| *paused).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves once `paused` says `false` (at once if it does already, or if
/// its sender is gone).
async fn until_resumed(paused: &mut watch::Receiver<bool>) {
    let _ = paused.wait_for(|paused| !*paused).await;
}

fn check(config: &ConsumerConfig) -> Result<(), Error> {
    let invalid = |what: &str, reason: &str| {
        Err(Error::Invalid {
            what: what.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if config.concurrency == 0 {
        return invalid("consumer concurrency", "must be at least 1");
    }
    if config.prefetch == 0 {
        // 0 means "unlimited" to the broker: never what a worker wants.
        return invalid("consumer prefetch", "must be at least 1");
    }
    Ok(())
}

async fn reconnecting<H: Handler>(
    config: &ConsumerConfig,
    spec: &TopologySpec,
    handler: &Arc<H>,
    publisher: &Publisher,
    shutdown: &CancellationToken,
    paused: &mut watch::Receiver<bool>,
) -> Result<(), Error> {
    let backoff = || {
        ExponentialBuilder::default()
            .with_min_delay(RECONNECT_MIN)
            .with_max_delay(RECONNECT_MAX)
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = backoff();
    let nodes = Nodes::new(&config.amqp_url);
    let mut session = 0u64;
    let mut failures = 0u64;
    loop {
        if *paused.borrow() {
            info!(queue = %config.queue, "paused: taking no deliveries until resumed");
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = until_resumed(paused) => {}
            }
            info!(queue = %config.queue, "resumed");
        }
        session += 1;
        let lost = match run_session(
            &nodes, config, spec, handler, publisher, shutdown, paused, session,
        )
        .await
        {
            Ok(Ended::Shutdown) => return Ok(()),
            Ok(Ended::Paused) => {
                delays = backoff();
                failures = 0;
                continue;
            }
            Err(lost) => lost,
        };
        if !lost.error.is_transient() {
            return Err(lost.error);
        }
        nodes.lost();
        if lost.was_consuming {
            // A session that worked starts the backoff over.
            delays = backoff();
            failures = 0;
        }
        failures += 1;
        let delay = delays.next().unwrap_or(RECONNECT_MAX);
        warn!(
            queue = %config.queue,
            error = %chain(&lost.error),
            failures,
            retry_in = ?delay,
            "lost the broker; reconnecting"
        );
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// How a session ended when nothing went wrong.
enum Ended {
    Shutdown,
    /// Paused: consume again once resumed.
    Paused,
}

/// Why a session ended other than by shutdown or pause.
struct Lost {
    error: Error,
    /// The session got as far as consuming.
    was_consuming: bool,
}

impl From<Error> for Lost {
    fn from(error: Error) -> Lost {
        Lost {
            error,
            was_consuming: false,
        }
    }
}

/// One connection's worth of consuming.
#[allow(clippy::too_many_arguments)] // one call site, each a distinct part
async fn run_session<H: Handler>(
    nodes: &Nodes,
    config: &ConsumerConfig,
    spec: &TopologySpec,
    handler: &Arc<H>,
    publisher: &Publisher,
    shutdown: &CancellationToken,
    paused: &mut watch::Receiver<bool>,
    session: u64,
) -> Result<Ended, Lost> {
    let tag = format!(
        "{}.{}.{session}",
        config.consumer_tag_prefix,
        std::process::id()
    );
    let established = tokio::select! {
        () = shutdown.cancelled() => return Ok(Ended::Shutdown),
        () = until_paused(paused) => return Ok(Ended::Paused),
        established = establish(nodes, config, spec, &tag) => established?,
    };
    let (connection, channel, mut deliveries) = established;
    if session > 1 {
        info!(queue = %config.queue, consumer = %tag, "reconnected; consuming again");
    } else {
        info!(queue = %config.queue, consumer = %tag, "consuming");
    }

    let permits = Arc::new(Semaphore::new(config.concurrency));
    let mut tasks = JoinSet::new();
    let ended = loop {
        // Reap finished handlers so the set does not grow.
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => break Stop::Shutdown,
            () = until_paused(paused) => break Stop::Paused,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => break Stop::Shutdown,
            () = until_paused(paused) => break Stop::Paused,
            next = deliveries.next() => next,
        };
        match next {
            // Deliveries lapin buffered before the channel died can no
            // longer be acked: the broker redelivers them, so skip them.
            Some(Ok(delivery)) if !delivery.acker.usable() => {}
            Some(Ok(delivery)) => {
                let task = handle_one(delivery, &config.queue, handler.clone(), publisher.clone());
                tasks.spawn(async move {
                    let _permit = permit;
                    task.await;
                });
            }
            Some(Err(source)) => {
                break Stop::Lost(Error::Amqp {
                    context: format!("consuming from `{}`", config.queue),
                    source,
                });
            }
            None => {
                break Stop::Lost(Error::ConsumerCancelled {
                    queue: config.queue.clone(),
                });
            }
        }
    };

    let (why, end) = match ended {
        Stop::Shutdown => ("shutting down", Ended::Shutdown),
        Stop::Paused => ("pausing", Ended::Paused),
        Stop::Lost(error) => {
            // Their acks cannot reach the broker any more, but letting them
            // finish keeps a redelivered copy from running beside them.
            finish(&mut tasks, config.shutdown_grace, "the connection was lost").await;
            return Err(Lost {
                error,
                was_consuming: true,
            });
        }
    };
    // Stop new deliveries first, then work the ones the broker already sent
    // (prefetched, not yet started) instead of handing them back: a quorum
    // queue counts a message handed back towards its delivery limit (every
    // return before RabbitMQ 4.3), so pausing or restarting a worker often
    // enough would dead-letter messages nothing ever tried. What the grace
    // period leaves unfinished goes back when the channel closes.
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    match channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await
    {
        Ok(()) => {
            let work = WorkPrefetched {
                queue: &config.queue,
                handler,
                publisher,
                permits: &permits,
            };
            let worked = work
                .until_drained(&mut deliveries, &mut tasks, deadline)
                .await;
            if worked > 0 {
                info!(queue = %config.queue, worked, "{why}: worked the deliveries already prefetched");
            }
        }
        Err(e) => {
            debug!(error = %chain(&e), "cancelling the consumer failed; closing anyway");
        }
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    finish(&mut tasks, left, why).await;
    topology::close(&channel).await;
    crate::close(&connection, why).await;
    info!(queue = %config.queue, consumer = %tag, "stopped consuming");
    Ok(end)
}

/// The deliveries a cancelled consumer still receives: those the broker
/// sent before its `basic.cancel-ok`, which ends the stream.
struct WorkPrefetched<'a, H> {
    queue: &'a str,
    handler: &'a Arc<H>,
    publisher: &'a Publisher,
    permits: &'a Arc<Semaphore>,
}

impl<H: Handler> WorkPrefetched<'_, H> {
    /// Hands each to a handler (at most `concurrency` at once) until the
    /// stream ends or `deadline`; returns how many.
    async fn until_drained(
        &self,
        deliveries: &mut Deliveries,
        tasks: &mut JoinSet<()>,
        deadline: tokio::time::Instant,
    ) -> usize {
        let mut worked = 0;
        loop {
            let next = async {
                let permit = self
                    .permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                (permit, deliveries.next().await)
            };
            let (permit, delivery) = tokio::select! {
                () = tokio::time::sleep_until(deadline) => return worked,
                next = next => next,
            };
            match delivery {
                Some(Ok(delivery)) if delivery.acker.usable() => {
                    let task = handle_one(
                        delivery,
                        self.queue,
                        self.handler.clone(),
                        self.publisher.clone(),
                    );
                    tasks.spawn(async move {
                        let _permit = permit;
                        task.await;
                    });
                    worked += 1;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return worked,
            }
        }
    }
}

/// Why the consume loop stopped.
enum Stop {
    Shutdown,
    Paused,
    Lost(Error),
}

type Deliveries = lapin::Consumer;

async fn establish(
    nodes: &Nodes,
    config: &ConsumerConfig,
    spec: &TopologySpec,
    tag: &str,
) -> Result<(Connection, Channel, Deliveries), Error> {
    let connection = nodes.connect(&config.consumer_tag_prefix).await?;
    topology::declare(&connection, spec).await?;
    let channel = topology::open(&connection, "consuming").await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await
        .map_err(Error::amqp("setting the prefetch (basic.qos)"))?;
    let deliveries = channel
        .basic_consume(
            config.queue.as_str().into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp(format!("consuming from `{}`", config.queue)))?;
    Ok((connection, channel, deliveries))
}

/// Waits up to `grace` for in-flight handlers, then abandons the rest
/// unsettled: the broker redelivers them once the channel is gone.
async fn finish(tasks: &mut JoinSet<()>, grace: Duration, why: &str) {
    while tasks.try_join_next().is_some() {}
    if tasks.is_empty() {
        return;
    }
    info!(
        in_flight = tasks.len(),
        ?grace,
        "{why}: waiting for in-flight handlers"
    );
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            next = tasks.join_next() => if next.is_none() { return },
        }
    }
    warn!(
        abandoned = tasks.len(),
        ?grace,
        "handlers did not finish within the grace period; their messages will be redelivered"
    );
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// Runs the handler on one delivery, then settles it.
fn handle_one<H: Handler>(
    delivery: Delivery,
    queue: &str,
    handler: Arc<H>,
    publisher: Publisher,
) -> impl Future<Output = ()> + Send + 'static {
    let Delivery {
        exchange,
        routing_key,
        redelivered,
        properties,
        data,
        acker,
        ..
    } = delivery;
    let incoming = Incoming::from_parts(
        data,
        &properties,
        redelivered,
        exchange.as_str(),
        routing_key.as_str(),
    );
    let meta = incoming.meta();
    let span = info_span!(
        "delivery",
        queue,
        message_id = meta.message_id.as_deref().unwrap_or(""),
        correlation_id = meta.correlation_id.as_deref().unwrap_or(""),
        order_id = meta.order_id.as_deref().unwrap_or(""),
        redelivered,
    );
    async move {
        let handled = AssertUnwindSafe(handler.handle(incoming, &publisher))
            .catch_unwind()
            .await;
        let settlement = handled.unwrap_or_else(|panic| {
            error!(
                panic = panic_text(panic.as_ref()),
                "handler panicked; requeueing the message"
            );
            Settlement::Requeue
        });
        settle(&acker, settlement).await;
    }
    .instrument(span)
}

async fn settle(acker: &Acker, settlement: Settlement) {
    let settled = settlement.apply(acker).await;
    // Only a lost channel makes settling fail, and the session reports
    // that once; per message it is detail.
    match settled {
        Ok(true) => debug!(?settlement, "settled"),
        Ok(false) => debug!(
            ?settlement,
            "not settled: the channel is gone; the broker will redeliver the message"
        ),
        Err(e) => debug!(
            ?settlement,
            error = %chain(&e),
            "not settled; the broker will redeliver the message"
        ),
    }
}

fn panic_text(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ConsumerConfig {
        ConsumerConfig {
            amqp_url: "amqp://127.0.0.1:1".into(),
            queue: "q".into(),
            prefetch: 10,
            concurrency: 4,
            shutdown_grace: Duration::from_secs(1),
            consumer_tag_prefix: "test".into(),
        }
    }

    #[test]
    fn zero_concurrency_or_prefetch_is_refused() {
        assert!(check(&config()).is_ok());
        let err = check(&ConsumerConfig {
            concurrency: 0,
            ..config()
        })
        .unwrap_err();
        assert!(err.to_string().contains("concurrency"), "{err}");
        assert!(
            check(&ConsumerConfig {
                prefetch: 0,
                ..config()
            })
            .is_err()
        );
    }

    #[test]
    fn panic_payloads_are_readable() {
        let text: Box<dyn Any + Send> = Box::new("boom");
        assert_eq!(panic_text(text.as_ref()), "boom");
        let owned: Box<dyn Any + Send> = Box::new(String::from("bang"));
        assert_eq!(panic_text(owned.as_ref()), "bang");
        let other: Box<dyn Any + Send> = Box::new(7u8);
        assert_eq!(panic_text(other.as_ref()), "(not a string)");
    }
}
