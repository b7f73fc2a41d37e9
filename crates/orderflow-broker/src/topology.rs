//! The exchanges, queues and bindings of one namespace, derived from the
//! policy, and their idempotent declaration.
//!
//! Every queue is a durable quorum queue with the policy's replica count
//! (`x-quorum-initial-group-size`; the broker caps it at its node count). The
//! count applies when a queue is created: a queue that exists with another
//! count (or none, declared before the policy had one) is taken as it is,
//! since declaring cannot change it (`rabbitmq-queues grow` can). Work queues carry an explicit
//! delivery limit (3.10 has no default; 4.x defaults to 20 and drops past it
//! without a dead-letter exchange) and dead-letter at-least-once to their
//! exception queue, which needs `reject-publish` overflow. Exception queues
//! carry the largest delivery limit, so reading them never drops a message.
//! Delay queues hold a message for their tier and dead-letter it back to the
//! work queue.

use crate::Error;
use crate::names::{Names, ORDER_CANCEL, ORDER_PLACED};
use crate::stream::StreamSpec;
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ErrorKind, ExchangeKind};
use orderflow_core::{Policy, Stage};
use std::time::Duration;

/// The queues of one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageQueues {
    pub stage: Stage,
    pub work: String,
    pub exceptions: String,
    /// One per policy delay tier, shortest first.
    pub delays: Vec<DelayQueue>,
}

/// A delay queue: messages wait `delay`, then return to the work queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayQueue {
    pub delay: Duration,
    pub queue: String,
}

/// The exception queues' delivery limit: the largest the broker takes.
pub const EXCEPTION_DELIVERY_LIMIT: i32 = i32::MAX;

/// Everything [`declare`] creates for one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologySpec {
    names: Names,
    delivery_limit: i32,
    quorum_replicas: i32,
    stages: Vec<StageQueues>,
    /// Finished orders, archived before their keys leave Redis.
    archive: StreamSpec,
    /// Every customer event (bound to the events exchange with `#`), for
    /// every subscriber to read in full.
    events: StreamSpec,
}

impl TopologySpec {
    pub fn from_policy(namespace: &str, policy: &Policy) -> Result<TopologySpec, Error> {
        let names = Names::new(namespace)?;
        let delivery_limit =
            i32::try_from(policy.broker.delivery_limit).map_err(|_| Error::Invalid {
                what: "broker.delivery_limit".into(),
                reason: format!(
                    "({}) does not fit the broker's 32-bit signed argument",
                    policy.broker.delivery_limit
                ),
            })?;
        let quorum_replicas = i32::try_from(policy.broker.quorum_replicas)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| Error::Invalid {
                what: "broker.quorum_replicas".into(),
                reason: format!(
                    "({}) must be at least 1 and fit the broker's 32-bit signed argument",
                    policy.broker.quorum_replicas
                ),
            })?;
        let stages = Stage::ALL
            .into_iter()
            .map(|stage| StageQueues {
                stage,
                work: names.work_queue(stage),
                exceptions: names.exception_queue(stage),
                delays: policy
                    .stage(stage)
                    .delay_tiers
                    .iter()
                    .map(|&delay| DelayQueue {
                        delay,
                        queue: names.delay_queue(stage, delay),
                    })
                    .collect(),
            })
            .collect();
        let retention = &policy.retention;
        let archive = StreamSpec {
            name: names.archive_stream(),
            max_age: retention.archive_max_age,
            max_bytes: retention.archive_max_bytes,
        };
        let events = StreamSpec {
            name: names.events_stream(),
            max_age: retention.events_max_age,
            max_bytes: retention.events_max_bytes,
        };
        Ok(TopologySpec {
            names,
            delivery_limit,
            quorum_replicas,
            stages,
            archive,
            events,
        })
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The archive stream of finished orders.
    pub fn archive(&self) -> &StreamSpec {
        &self.archive
    }

    /// The stream of every customer event.
    pub fn events(&self) -> &StreamSpec {
        &self.events
    }

    pub fn stage(&self, stage: Stage) -> &StageQueues {
        self.stages
            .iter()
            .find(|s| s.stage == stage)
            .expect("a spec has queues for every stage")
    }

    /// The delay queue of the n-th deferral (0-based), the last tier
    /// repeating: the queue for `StagePolicy::tier(deferrals)`.
    pub fn delay_queue(&self, stage: Stage, deferrals: u32) -> &DelayQueue {
        let delays = &self.stage(stage).delays;
        let index = usize::try_from(deferrals)
            .unwrap_or(usize::MAX)
            .min(delays.len().saturating_sub(1));
        &delays[index]
    }

    /// Every queue name, work queues first.
    pub fn queue_names(&self) -> Vec<String> {
        self.queues().into_iter().map(|(name, _)| name).collect()
    }

    pub fn exchange_names(&self) -> [String; 2] {
        [self.names.orders_exchange(), self.names.events_exchange()]
    }

    /// Each queue with its declare arguments.
    fn queues(&self) -> Vec<(String, FieldTable)> {
        let quorum = || {
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), text("quorum"));
            args.insert(REPLICAS.into(), AMQPValue::LongInt(self.quorum_replicas));
            args
        };
        let mut queues = Vec::new();
        for stage in &self.stages {
            let mut work = quorum();
            work.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongInt(self.delivery_limit),
            );
            dead_letter_to(&mut work, &stage.exceptions);
            queues.push((stage.work.clone(), work));
        }
        for stream in [&self.events, &self.archive] {
            queues.push((stream.name.clone(), stream.arguments()));
        }
        for stage in &self.stages {
            let mut exceptions = quorum();
            // Never dropped for being read: operators peek (and the console
            // reads every few seconds), each read is a delivery, and 4.x
            // would drop past its default limit of 20. 3.x takes no -1
            // (unlimited), so the largest limit instead.
            exceptions.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongInt(EXCEPTION_DELIVERY_LIMIT),
            );
            queues.push((stage.exceptions.clone(), exceptions));
            for delay in &stage.delays {
                let mut args = quorum();
                let ttl = i64::try_from(delay.delay.as_millis()).unwrap_or(i64::MAX);
                args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
                dead_letter_to(&mut args, &stage.work);
                queues.push((delay.queue.clone(), args));
            }
        }
        queues
    }
}

/// The declare argument of a quorum queue's replica count.
const REPLICAS: &str = "x-quorum-initial-group-size";

/// At-least-once dead-lettering through the default exchange to `queue`.
fn dead_letter_to(args: &mut FieldTable, queue: &str) {
    args.insert("x-dead-letter-exchange".into(), text(""));
    args.insert("x-dead-letter-routing-key".into(), text(queue));
    args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    // at-least-once needs it; and a full queue then refuses new messages
    // instead of dropping its oldest.
    args.insert("x-overflow".into(), text("reject-publish"));
}

pub(crate) fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Declares the exchanges, queues and bindings of `spec` on one channel.
/// Idempotent. A queue that exists with other arguments is a
/// [`Error::TopologyConflict`] naming the queue and the argument.
pub async fn declare(connection: &Connection, spec: &TopologySpec) -> Result<(), Error> {
    let mut channel = open(connection, "declaring the topology").await?;
    let result = declare_on(connection, &mut channel, spec).await;
    close(&channel).await;
    result
}

async fn declare_queue(channel: &Channel, queue: &str, arguments: FieldTable) -> Result<(), Error> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .map(|_| ())
        .map_err(|source| match precondition_failed(&source) {
            Some(detail) => Error::TopologyConflict {
                argument: inequivalent_argument(&detail),
                queue: queue.to_owned(),
                detail,
            },
            None => Error::Amqp {
                context: format!("declaring queue `{queue}`"),
                source,
            },
        })
}

async fn declare_on(
    connection: &Connection,
    channel: &mut Channel,
    spec: &TopologySpec,
) -> Result<(), Error> {
    for exchange in spec.exchange_names() {
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|source| match precondition_failed(&source) {
                Some(detail) => Error::ExchangeConflict { exchange, detail },
                None => Error::Amqp {
                    context: format!("declaring exchange `{exchange}`"),
                    source,
                },
            })?;
    }
    for (queue, arguments) in spec.queues() {
        let declared = match declare_queue(channel, &queue, arguments.clone()).await {
            Err(Error::TopologyConflict {
                argument, detail, ..
            }) if argument == REPLICAS => {
                // The queue exists with its own replica count: keep it. The
                // refusal closed the channel.
                *channel = open(connection, "declaring the topology").await?;
                let mut arguments = arguments;
                match existing_replicas(&detail) {
                    Some(Some(count)) => {
                        arguments.insert(REPLICAS.into(), AMQPValue::LongInt(count));
                    }
                    Some(None) => {
                        let mut without = arguments.inner().clone();
                        without.retain(|key, _| key.as_str() != REPLICAS);
                        arguments = FieldTable::from(without);
                    }
                    None => {
                        return Err(Error::TopologyConflict {
                            queue,
                            argument,
                            detail,
                        });
                    }
                }
                declare_queue(channel, &queue, arguments).await
            }
            declared => declared,
        };
        declared?;
    }
    // Every event is kept on the stream, so an event is never unroutable
    // even before any subscriber has bound a queue of its own.
    let (events, events_queue) = (spec.names.events_exchange(), spec.events.name.clone());
    channel
        .queue_bind(
            events_queue.as_str().into(),
            events.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp(format!(
            "binding `{events_queue}` to `{events}`"
        )))?;
    let orders = spec.names.orders_exchange();
    let inventory = &spec.stage(Stage::Inventory).work;
    for key in [ORDER_PLACED, ORDER_CANCEL] {
        channel
            .queue_bind(
                inventory.as_str().into(),
                orders.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(Error::amqp(format!(
                "binding `{inventory}` to `{orders}` for `{key}`"
            )))?;
    }
    Ok(())
}

/// Deletes every queue and exchange of `spec`, messages included: for tests
/// and for retiring a namespace. Missing ones are fine.
pub async fn delete(connection: &Connection, spec: &TopologySpec) -> Result<(), Error> {
    let channel = open(connection, "deleting the topology").await?;
    let result = async {
        for queue in spec.queue_names() {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(Error::amqp(format!("deleting queue `{queue}`")))?;
        }
        for exchange in spec.exchange_names() {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .map_err(Error::amqp(format!("deleting exchange `{exchange}`")))?;
        }
        Ok(())
    }
    .await;
    close(&channel).await;
    result
}

pub(crate) async fn open(connection: &Connection, purpose: &str) -> Result<Channel, Error> {
    connection
        .create_channel()
        .await
        .map_err(Error::amqp(format!("opening a channel for {purpose}")))
}

/// Closes a channel we are done with. A channel the broker already closed
/// (after a refused declare) has nothing left to close.
pub(crate) async fn close(channel: &Channel) {
    if channel.status().connected() {
        let _ = channel.close(200, "done".into()).await;
    }
}

/// The broker's text when it refused a declare as inequivalent (406).
fn precondition_failed(error: &lapin::Error) -> Option<String> {
    match error.kind() {
        ErrorKind::ProtocolError(e)
            if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) =>
        {
            Some(e.get_message().to_string())
        }
        _ => None,
    }
}

/// `x-delivery-limit` out of "... inequivalent arg 'x-delivery-limit' for
/// queue ...".
fn inequivalent_argument(detail: &str) -> String {
    detail
        .split_once("inequivalent arg '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map_or_else(
            || "(see the broker's text)".to_owned(),
            |(arg, _)| arg.to_owned(),
        )
}

/// The replica count a queue has, from the broker's refusal: `Some(None)`
/// for "... but current is none", `Some(Some(3))` for "... but current is
/// '3'" (or "the value '3' of type 'signedint'"); `None` if the text says
/// neither.
fn existing_replicas(detail: &str) -> Option<Option<i32>> {
    let (_, current) = detail.rsplit_once("current is ")?;
    if current.starts_with("none") {
        return Some(None);
    }
    let quoted = current.strip_prefix("the value ").unwrap_or(current);
    let value = quoted.strip_prefix('\'')?.split('\'').next()?;
    value.parse().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_core::policy::parse;

    fn spec() -> TopologySpec {
        let policy = parse(
            "[broker]\ndelivery_limit = 7\n[stages.payment]\ndelay_tiers = [\"2s\", \"10s\"]\n",
            "test",
        )
        .unwrap();
        TopologySpec::from_policy("ns", &policy).unwrap()
    }

    fn arg<'a>(args: &'a FieldTable, name: &str) -> &'a AMQPValue {
        args.inner()
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn work_queues_are_limited_quorum_queues_dead_lettering_to_their_exceptions() {
        let spec = spec();
        let queues = spec.queues();
        let (name, args) = &queues[1];
        assert_eq!(name, "ns.payment");
        assert_eq!(arg(args, "x-queue-type"), &text("quorum"));
        assert_eq!(arg(args, "x-delivery-limit"), &AMQPValue::LongInt(7));
        assert_eq!(arg(args, "x-dead-letter-exchange"), &text(""));
        assert_eq!(
            arg(args, "x-dead-letter-routing-key"),
            &text("ns.payment.exceptions")
        );
        assert_eq!(arg(args, "x-dead-letter-strategy"), &text("at-least-once"));
        assert_eq!(arg(args, "x-overflow"), &text("reject-publish"));
    }

    #[test]
    fn reading_an_exception_queue_never_reaches_its_delivery_limit() {
        let spec = spec();
        let queues = spec.queues();
        let (_, args) = queues
            .iter()
            .find(|(name, _)| name == "ns.payment.exceptions")
            .unwrap();
        assert_eq!(arg(args, "x-queue-type"), &text("quorum"));
        assert_eq!(arg(args, "x-delivery-limit"), &AMQPValue::LongInt(i32::MAX));
        assert!(
            !args.inner().contains_key("x-dead-letter-exchange"),
            "the end of the line: nothing dead-letters out of it"
        );
    }

    #[test]
    fn delay_queues_expire_back_to_their_work_queue() {
        let spec = spec();
        let queues = spec.queues();
        let (_, args) = queues
            .iter()
            .find(|(name, _)| name == "ns.payment.delay.10s")
            .unwrap();
        assert_eq!(arg(args, "x-message-ttl"), &AMQPValue::LongLongInt(10_000));
        assert_eq!(arg(args, "x-dead-letter-routing-key"), &text("ns.payment"));
        assert_eq!(arg(args, "x-overflow"), &text("reject-publish"));
        assert!(!args.contains_key("x-delivery-limit"));
    }

    #[test]
    fn events_and_the_archive_are_streams_kept_by_the_policy_retention() {
        let spec = spec();
        let queues = spec.queues();
        for name in ["ns.events.stream", "ns.archive"] {
            let (_, args) = queues.iter().find(|(n, _)| n == name).unwrap();
            assert_eq!(arg(args, "x-queue-type"), &text("stream"), "{name}");
            assert!(args.contains_key("x-max-age"), "{name}");
            assert!(args.contains_key("x-max-length-bytes"), "{name}");
        }
    }

    #[test]
    fn every_stage_has_work_exception_and_delay_queues() {
        let spec = spec();
        let names = spec.queue_names();
        // 3 work + events and archive streams + 3 exception + 5 + 2 + 5
        // delay queues.
        assert_eq!(names.len(), 20);
        assert!(names.contains(&"ns.shipping.exceptions".to_owned()));
        assert!(names.contains(&"ns.events.stream".to_owned()));
        assert!(names.contains(&"ns.archive".to_owned()));
        assert_eq!(
            spec.exchange_names(),
            ["ns.orders".to_owned(), "ns.events".to_owned()]
        );
    }

    #[test]
    fn the_last_delay_tier_repeats() {
        let spec = spec();
        assert_eq!(
            spec.delay_queue(Stage::Payment, 0).queue,
            "ns.payment.delay.2s"
        );
        assert_eq!(
            spec.delay_queue(Stage::Payment, 9).delay,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn every_queue_asks_for_the_policy_replica_count() {
        let policy = parse("[broker]\nquorum_replicas = 5\n", "test").unwrap();
        let five = TopologySpec::from_policy("ns", &policy).unwrap();
        // Every quorum queue; the two streams take RabbitMQ's own default,
        // a replica on every node of the cluster.
        let quorum: Vec<_> = five
            .queues()
            .into_iter()
            .filter(|(_, args)| arg(args, "x-queue-type") == &text("quorum"))
            .collect();
        assert_eq!(quorum.len(), five.queues().len() - 2);
        for (name, args) in quorum {
            assert_eq!(arg(&args, REPLICAS), &AMQPValue::LongInt(5), "{name}");
        }
        let default = spec().queues();
        assert_eq!(arg(&default[0].1, REPLICAS), &AMQPValue::LongInt(3));
    }

    #[test]
    fn an_existing_queue_replica_count_is_read_from_the_refusal() {
        let head = "PRECONDITION_FAILED - inequivalent arg 'x-quorum-initial-group-size' for queue 'ns.payment' in vhost '/': received the value '3' of type 'signedint' but current is ";
        assert_eq!(existing_replicas(&format!("{head}none")), Some(None));
        assert_eq!(
            existing_replicas(&format!("{head}the value '5' of type 'signedint'")),
            Some(Some(5))
        );
        assert_eq!(
            existing_replicas("... received '5' but current is '1'"),
            Some(Some(1))
        );
        assert_eq!(existing_replicas("something else"), None);
    }

    #[test]
    fn the_inequivalent_argument_is_read_from_the_broker_text() {
        let detail = "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'ns.inventory' in vhost '/': received the value '4' of type 'signedint' but current is the value '10' of type 'signedint'";
        assert_eq!(inequivalent_argument(detail), "x-delivery-limit");
        assert_eq!(
            inequivalent_argument("something else"),
            "(see the broker's text)"
        );
    }
}
