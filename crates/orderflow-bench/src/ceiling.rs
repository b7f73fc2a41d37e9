//! The ceiling: the barest workload that still does what a no-op stage must
//! do per hop, in lapin and redis directly, so the runtime's CPU per order
//! can be judged against it in the same run.
//!
//! An order crosses four quorum queues. Every stage makes two Redis round
//! trips on a shared multiplexed connection and moves the order's state on
//! by compare-and-set (a Lua script):
//! - the producer (driver) creates the state (`SET NX PX`) and sets it 0 → 1,
//!   then publishes to hop 1;
//! - the three forwarders (worker process) claim the delivery (`SET NX PX`),
//!   move the state on, publish to the next hop, await the confirm, ack;
//! - the final consumer (driver) moves the state 4 → 5, appends to a stream
//!   (`XADD`) and acks.
//!
//! Ten Redis round trips, four confirmed publishes and four acks per order;
//! at most [`WINDOW`] orders in flight.
//!
//! [`Load::WithEvents`] adds what a fleet's `happy` order publishes besides
//! its work messages: six customer events ([`FLEET_EVENTS`] per hop), each
//! confirmed through a topic exchange into a stream before the hop's ack —
//! the fleet's contract done bare, so the cost of the events can be told
//! apart from the cost of the fleet's own code.
//!
//! [`Load::WithRecords`] keeps the bare lapin hops but does each hop's Redis
//! work through the runtime's store, as a no-op stage does: the order
//! created with its audit entry and index, then per hop the lease with the
//! message's idempotency lookup (one script) and the fenced compare-and-set
//! with the audit entry, idempotency record and lease release (another),
//! followed by the fleet-wide audit copy and index. That is the durability
//! the runtime promises done without the runtime, so its cost can be told
//! apart from the cost of the runtime's own layers. [`Load::Contract`] does
//! both.

use crate::measure::{CpuSample, Driven};
use crate::raw::{hop_headers, now_us};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ExchangeKind, PublisherConfirm};
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Policy, PolicyId, Stage};
use orderflow_store::{Begun, Store, Transition};
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub const HOPS: usize = 4;
/// Orders in flight end to end, as the reference run (`workflow quorum 1000`).
pub const WINDOW: usize = 1000;
/// Unacked deliveries per hop consumer, as the reference run.
pub const PREFETCH: u16 = 250;
/// How long claims and states live if a run is cut short before its cleanup.
const KEY_TTL_MS: u64 = 60_000;

/// Customer events a fleet's `happy` order publishes at each of its four
/// hops: received and reserved (inventory), paid, shipment accepted, then
/// the parcel's last step and delivered (tracking).
pub const FLEET_EVENTS: [usize; HOPS] = [2, 1, 1, 2];

/// What the workload publishes per order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// The four hops alone: the bare work of a no-op stage.
    Hops,
    /// The hops and the fleet's customer events ([`FLEET_EVENTS`]).
    WithEvents,
    /// The hops with the runtime's durability writes, through its store.
    WithRecords,
    /// The hops, the events and the records: the fleet's contract done
    /// bare, its six HTTP calls aside.
    Contract,
}

impl Load {
    /// Whether the hops publish the fleet's customer events.
    pub fn events(self) -> bool {
        matches!(self, Load::WithEvents | Load::Contract)
    }

    /// Whether each hop writes through the runtime's store.
    pub fn records(self) -> bool {
        matches!(self, Load::WithRecords | Load::Contract)
    }
}

/// The stage whose lease each hop takes and the state it moves the order
/// to, as the runtime's no-op stages: received → reserved → paid →
/// shipment_accepted → delivered.
const RECORD_HOPS: [(Stage, OrderState, OrderState); HOPS] = [
    (Stage::Inventory, OrderState::Received, OrderState::Reserved),
    (Stage::Payment, OrderState::Reserved, OrderState::Paid),
    (
        Stage::Shipping,
        OrderState::Paid,
        OrderState::ShipmentAccepted,
    ),
    (
        Stage::Inventory,
        OrderState::ShipmentAccepted,
        OrderState::Delivered,
    ),
];

/// Moves the state from ARGV[1] to ARGV[2], keeping its expiry; 1 if it did.
const COMPARE_AND_SET: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
";

/// `{base}.q1` … `{base}.q4`.
fn queue(base: &str, hop: usize) -> String {
    format!("{base}.q{hop}")
}

fn state_key(base: &str, order: u64) -> String {
    format!("{base}:state:{order}")
}

fn claim_key(base: &str, order: u64, stage: usize) -> String {
    format!("{base}:claim:{order}:{stage}")
}

fn events_key(base: &str) -> String {
    format!("{base}:events")
}

/// The customer events' topic exchange and the stream bound to it, as the
/// fleet's `{ns}.events` and `{ns}.events.stream`.
fn events_exchange(base: &str) -> String {
    format!("{base}.events")
}

fn events_stream(base: &str) -> String {
    format!("{base}.events.stream")
}

pub async fn declare(conn: &Connection, base: &str, load: Load) -> anyhow::Result<()> {
    let channel = conn.create_channel().await?;
    if load.events() {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                events_exchange(base).as_str().into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
        declare_durable(&channel, &events_stream(base), "stream").await?;
        channel
            .queue_bind(
                events_stream(base).as_str().into(),
                events_exchange(base).as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    for hop in 1..=HOPS {
        declare_durable(&channel, &queue(base, hop), "quorum").await?;
    }
    Ok(())
}

/// A durable queue of `queue_type` (`quorum`, `stream`).
async fn declare_durable(channel: &Channel, name: &str, queue_type: &str) -> anyhow::Result<()> {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(queue_type)),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel.queue_declare(name.into(), durable, args).await?;
    Ok(())
}

/// Deletes the run's queues (and events' exchange and stream) and every
/// Redis key it wrote.
pub async fn delete(
    conn: &Connection,
    redis_url: &str,
    base: &str,
    orders: usize,
    load: Load,
) -> anyhow::Result<()> {
    let channel = conn.create_channel().await?;
    if load.events() {
        channel
            .queue_delete(
                events_stream(base).as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await?;
        channel
            .exchange_delete(
                events_exchange(base).as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await?;
    }
    for hop in 1..=HOPS {
        channel
            .queue_delete(
                queue(base, hop).as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await?;
    }
    if load.records() {
        Store::connect(redis_url, base)
            .await?
            .purge_namespace()
            .await?;
    }
    let mut redis = redis_connection(redis_url).await?;
    let orders = 0..u64::try_from(orders)?;
    let mut keys = vec![events_key(base)];
    for order in orders {
        keys.push(state_key(base, order));
        keys.extend((1..HOPS).map(|stage| claim_key(base, order, stage)));
        if keys.len() >= 1000 {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await?;
            keys.clear();
        }
    }
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await?;
    }
    Ok(())
}

async fn redis_connection(url: &str) -> anyhow::Result<MultiplexedConnection> {
    Ok(redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?)
}

/// One stage's Redis side.
#[derive(Clone)]
struct StageStore {
    redis: MultiplexedConnection,
    writes: Writes,
    base: Arc<str>,
}

/// How a hop moves the order.
#[derive(Clone)]
enum Writes {
    /// A claim and a compare-and-set of a bare counter.
    Bare(Arc<redis::Script>),
    /// The runtime's lease, compare-and-set, audit and idempotency record.
    Records {
        store: Store,
        policy_id: PolicyId,
        /// The lease holder's token, as a worker process has one.
        token: Arc<str>,
    },
}

/// How long a hop's stage lease lives, as the default policy's.
const LEASE_TTL: Duration = Duration::from_secs(30);

impl StageStore {
    async fn open(url: &str, base: &str, load: Load) -> anyhow::Result<StageStore> {
        let writes = if load.records() {
            Writes::Records {
                store: Store::connect(url, base).await?,
                policy_id: Policy::default_policy().id(),
                token: format!("ceiling/{}", uuid::Uuid::new_v4().simple()).into(),
            }
        } else {
            Writes::Bare(Arc::new(redis::Script::new(COMPARE_AND_SET)))
        };
        Ok(StageStore {
            redis: redis_connection(url).await?,
            writes,
            base: base.into(),
        })
    }

    /// Creates the order in its first state.
    async fn create(&mut self, order: u64) -> anyhow::Result<()> {
        match &self.writes {
            Writes::Bare(_) => {
                let _: Option<String> = redis::cmd("SET")
                    .arg(state_key(&self.base, order))
                    .arg(0)
                    .arg("NX")
                    .arg("PX")
                    .arg(KEY_TTL_MS)
                    .query_async(&mut self.redis)
                    .await?;
                self.advance(order, 0).await?;
            }
            Writes::Records {
                store, policy_id, ..
            } => {
                let body = serde_json::json!({ "order_id": record_id(order).as_str() });
                store
                    .create_order(
                        &record_id(order),
                        &body,
                        &correlation_id(order),
                        policy_id,
                        "ceiling",
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Moves the order through `hop` (1 to [`HOPS`]); false if it was
    /// elsewhere. Bare, the forwarders claim the delivery first (`claim`)
    /// and the final stage does not; with records every hop takes the
    /// stage lease, which finds a repeated message by its idempotency record.
    async fn hop(&mut self, order: u64, hop: usize, claim: Option<&[u8]>) -> anyhow::Result<bool> {
        let Writes::Records {
            store,
            policy_id,
            token,
        } = &self.writes
        else {
            if let Some(body) = claim {
                let _: Option<String> = redis::cmd("SET")
                    .arg(claim_key(&self.base, order, hop))
                    .arg(body)
                    .arg("NX")
                    .arg("PX")
                    .arg(KEY_TTL_MS)
                    .query_async(&mut self.redis)
                    .await?;
            }
            return self.advance(order, hop).await;
        };
        let (stage, from, to) = RECORD_HOPS[hop - 1];
        let order_id = record_id(order);
        let step = format!("msg:{order_id}.hop{hop}");
        let (lease, record) = match store
            .begin_step(&order_id, stage, token, LEASE_TTL, &step)
            .await?
        {
            Begun::Ready {
                lease,
                order: Some(record),
                ..
            } if record.state == from => (lease, record),
            Begun::Recorded { .. } => return Ok(true),
            _ => return Ok(false),
        };
        // What the runtime records for a settled step: the message it
        // publishes next, so a repeat re-emits it instead of working again.
        let next = serde_json::json!([{
            "exchange": "",
            "routing_key": queue(&self.base, hop + 1),
            "body": order.to_string(),
            "meta": {
                "message_id": format!("{order_id}.{stage}.v{}", record.version + 1),
                "order_id": order_id.as_str(),
                "order_version": record.version + 1,
                "correlation_id": correlation_id(order),
                "policy_id": policy_id.as_str(),
                "attempt": 1,
            },
        }]);
        store
            .transition(
                &order_id,
                &Transition {
                    expected_version: record.version,
                    from,
                    to,
                    reason: None,
                    event: format!("ceiling_{to}"),
                    actor: token.to_string(),
                    correlation_id: correlation_id(order),
                    policy_id: policy_id.clone(),
                    rule: Some("ceiling.advance".into()),
                    fields_to_set: Vec::new(),
                    idempotency: Some((stage, step, next)),
                    fencing: Some((stage, lease.fencing)),
                    release_lease: true,
                },
            )
            .await?;
        Ok(true)
    }

    /// The bare compare-and-set: the counter from `stage` to `stage + 1`.
    async fn advance(&mut self, order: u64, stage: usize) -> anyhow::Result<bool> {
        let Writes::Bare(script) = &self.writes else {
            anyhow::bail!("a bare compare-and-set on a store with records");
        };
        let moved: i64 = script
            .key(state_key(&self.base, order))
            .arg(stage)
            .arg(stage + 1)
            .invoke_async(&mut self.redis)
            .await?;
        Ok(moved == 1)
    }

    async fn record_completion(&mut self, order: u64) -> anyhow::Result<()> {
        let _: String = redis::cmd("XADD")
            .arg(events_key(&self.base))
            .arg("*")
            .arg("order")
            .arg(order)
            .arg("state")
            .arg("completed")
            .query_async(&mut self.redis)
            .await?;
        Ok(())
    }
}

/// The order's id in the store (`ord-N`).
fn record_id(order: u64) -> OrderId {
    OrderId::parse(&format!("ord-{order}")).expect("ord-N is an order id")
}

fn correlation_id(order: u64) -> String {
    format!("corr-{order}")
}

fn order_of(body: &[u8]) -> anyhow::Result<u64> {
    Ok(std::str::from_utf8(body)?.parse()?)
}

/// Publishes persistent with the hop-latency headers and awaits the confirm.
async fn publish_confirmed(
    channel: &Channel,
    to: &str,
    body: &[u8],
    headers: FieldTable,
) -> anyhow::Result<()> {
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    let confirm = channel
        .basic_publish(
            "".into(),
            to.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await?;
    confirmed(confirm, to).await
}

/// A confirm that counts: acked and not returned unroutable (an event with
/// no stream behind its exchange would make the workload cheaper, not
/// fail it).
async fn confirmed(confirm: PublisherConfirm, to: &str) -> anyhow::Result<()> {
    match confirm.await? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => anyhow::bail!("a publish to {to} was unroutable"),
        other => anyhow::bail!("the broker did not take a publish to {to}: {other:?}"),
    }
}

/// Publishes the hop's customer events (only if the load has them) and
/// awaits their confirms: JSON of a fleet event's size, persistent,
/// mandatory, with an id and a time, as the fleet's.
async fn publish_events(
    channel: &Channel,
    exchange: &str,
    load: Load,
    order: u64,
    hop: usize,
) -> anyhow::Result<()> {
    if !load.events() {
        return Ok(());
    }
    let mut confirms = Vec::with_capacity(FLEET_EVENTS[hop - 1]);
    for n in 0..FLEET_EVENTS[hop - 1] {
        let id = format!("ord-{order}.hop{hop}.{n}");
        let body = format!(
            r#"{{"event_id":"{id}","order_id":"ord-{order}","version":{hop},"state":"hop{hop}","reason":null,"message":"Your order moved on: step {hop} of 4.","at":"{}"}}"#,
            now_us()
        );
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(id.as_str().into())
            .with_timestamp(u64::try_from(now_us() / 1_000_000).unwrap_or(0));
        let mandatory = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        confirms.push(
            channel
                .basic_publish(
                    exchange.into(),
                    format!("order.hop{hop}").as_str().into(),
                    mandatory,
                    body.as_bytes(),
                    properties,
                )
                .await?,
        );
    }
    for confirm in confirms {
        confirmed(confirm, exchange).await?;
    }
    Ok(())
}

/// The worker process: the three forwarding stages, each on a connection of
/// its own, until `shutdown`.
pub async fn worker(
    amqp_url: &str,
    redis_url: &str,
    base: &str,
    load: Load,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut stages = JoinSet::new();
    for stage in 1..HOPS {
        let conn = crate::raw::connect(amqp_url).await?;
        let store = StageStore::open(redis_url, base, load).await?;
        stages.spawn(forward(conn, store, stage, base.to_owned(), load));
    }
    tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        Some(ended) = stages.join_next() => ended?,
    }
}

async fn forward(
    conn: Connection,
    store: StageStore,
    stage: usize,
    base: String,
    load: Load,
) -> anyhow::Result<()> {
    let consuming = conn.create_channel().await?;
    consuming
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let publishing = conn.create_channel().await?;
    publishing
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let from = queue(&base, stage);
    let to: Arc<str> = queue(&base, stage + 1).into();
    let events: Arc<str> = events_exchange(&base).into();
    let mut deliveries = consuming
        .basic_consume(
            from.as_str().into(),
            format!("ceiling-{from}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    while let Some(delivery) = deliveries.next().await {
        let delivery = delivery?;
        let (mut store, publishing, to, events) = (
            store.clone(),
            publishing.clone(),
            to.clone(),
            events.clone(),
        );
        tokio::spawn(async move {
            let forwarded = async {
                let order = order_of(&delivery.data)?;
                store.hop(order, stage, Some(&delivery.data)).await?;
                let headers = hop_headers(delivery.properties.headers());
                let (next, events) = futures_lite::future::zip(
                    publish_confirmed(&publishing, &to, &delivery.data, headers),
                    publish_events(&publishing, &events, load, order, stage),
                )
                .await;
                next?;
                events?;
                delivery.ack(BasicAckOptions::default()).await?;
                anyhow::Ok(())
            };
            // Not forwarded: left unacked, the broker redelivers it.
            let _ = forwarded.await;
        });
    }
    Ok(())
}

/// The producer and the final stage: `orders` orders through the chain, at
/// most [`WINDOW`] in flight; returns when every one has completed.
pub async fn drive(
    amqp_url: &str,
    redis_url: &str,
    base: &str,
    orders: usize,
    load: Load,
    worker_pid: u32,
) -> anyhow::Result<Driven> {
    let conn = crate::raw::connect(amqp_url).await?;
    let window = Arc::new(Semaphore::new(WINDOW));
    let out_of_step = Arc::new(AtomicUsize::new(0));
    let (completed_tx, mut completed) = tokio::sync::mpsc::unbounded_channel::<Vec<f64>>();

    let final_channel = conn.create_channel().await?;
    final_channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let last = queue(base, HOPS);
    let mut deliveries = final_channel
        .basic_consume(
            last.as_str().into(),
            format!("ceiling-{last}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let final_store = StageStore::open(redis_url, base, load).await?;
    let final_publishing = conn.create_channel().await?;
    final_publishing
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let final_events: Arc<str> = events_exchange(base).into();
    let (final_window, final_out_of_step) = (window.clone(), out_of_step.clone());
    let finishing = tokio::spawn(async move {
        while let Some(Ok(delivery)) = deliveries.next().await {
            let (mut store, publishing, events, window, out_of_step, completed_tx) = (
                final_store.clone(),
                final_publishing.clone(),
                final_events.clone(),
                final_window.clone(),
                final_out_of_step.clone(),
                completed_tx.clone(),
            );
            tokio::spawn(async move {
                let finished = async {
                    let order = order_of(&delivery.data)?;
                    if !store.hop(order, HOPS, None).await? {
                        out_of_step.fetch_add(1, Ordering::Relaxed);
                    }
                    store.record_completion(order).await?;
                    publish_events(&publishing, &events, load, order, HOPS).await?;
                    delivery.ack(BasicAckOptions::default()).await?;
                    anyhow::Ok(hops_of(&Some(hop_headers(delivery.properties.headers()))))
                };
                if let Ok(hops) = finished.await {
                    window.add_permits(1);
                    let _ = completed_tx.send(hops);
                }
            });
        }
    });

    let producing = conn.create_channel().await?;
    producing
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let producer_store = StageStore::open(redis_url, base, load).await?;
    let first: Arc<str> = queue(base, 1).into();
    let started = Instant::now();
    let producer = {
        let window = window.clone();
        tokio::spawn(async move {
            for order in 0..orders as u64 {
                window.acquire().await?.forget();
                let (mut store, producing, first) =
                    (producer_store.clone(), producing.clone(), first.clone());
                tokio::spawn(async move {
                    let produced = async {
                        store.create(order).await?;
                        let body = order.to_string();
                        let mut headers = FieldTable::default();
                        headers.insert("sent-us".into(), AMQPValue::LongLongInt(now_us()));
                        publish_confirmed(&producing, &first, body.as_bytes(), headers).await
                    };
                    let _ = produced.await;
                });
            }
            anyhow::Ok(())
        })
    };

    let mut hops_ms = Vec::with_capacity(orders * HOPS);
    let mut received = 0;
    while received < orders {
        let hops = tokio::time::timeout(Duration::from_secs(60), completed.recv())
            .await
            .map_err(|_| anyhow::anyhow!("ceiling stalled after {received} of {orders} orders"))?
            .ok_or_else(|| anyhow::anyhow!("the final stage ended"))?;
        hops_ms.extend(hops);
        received += 1;
    }
    let cpu_at_end = CpuSample::take(worker_pid);
    let elapsed = started.elapsed();
    producer.abort();
    finishing.abort();
    orderflow_broker::close(&conn, "done").await;
    let out_of_step = out_of_step.load(Ordering::Relaxed);
    anyhow::ensure!(
        out_of_step == 0,
        "{out_of_step} orders reached the last hop in the wrong state"
    );
    Ok(Driven {
        elapsed,
        cpu_at_end,
        hops_ms,
    })
}

/// The hop latencies stamped by [`hop_headers`], in ms.
fn hops_of(headers: &Option<FieldTable>) -> Vec<f64> {
    match headers.as_ref().and_then(|h| h.inner().get("hops")) {
        Some(AMQPValue::LongString(list)) => list
            .to_string()
            .split(',')
            .filter_map(|us| us.parse::<f64>().ok())
            .map(|us| us / 1000.0)
            .collect(),
        _ => Vec::new(),
    }
}
