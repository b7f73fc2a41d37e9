//! The baseline: the same four hops in raw lapin — consume, publish the
//! next message persistent with a confirm, ack — on quorum queues with the
//! same arguments as orderflow's work queues, and nothing else.

use crate::measure::{CpuSample, Driven};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub const HOPS: usize = 4;

/// `{base}.hop1` … `{base}.hop4`, then `{base}.done` where the driver counts.
fn queue(base: &str, hop: usize) -> String {
    if hop > HOPS {
        format!("{base}.done")
    } else {
        format!("{base}.hop{hop}")
    }
}

pub(crate) fn now_us() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros(),
    )
    .unwrap_or(i64::MAX)
}

pub async fn connect(url: &str) -> anyhow::Result<Connection> {
    Ok(Connection::connect(url, ConnectionProperties::default()).await?)
}

pub async fn declare(conn: &Connection, base: &str, delivery_limit: i32) -> anyhow::Result<()> {
    let channel = conn.create_channel().await?;
    for hop in 1..=HOPS + 1 {
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(delivery_limit),
        );
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue(base, hop).as_str().into(), durable, args)
            .await?;
    }
    Ok(())
}

pub async fn delete(conn: &Connection, base: &str) -> anyhow::Result<()> {
    let channel = conn.create_channel().await?;
    for hop in 1..=HOPS + 1 {
        channel
            .queue_delete(
                queue(base, hop).as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await?;
    }
    Ok(())
}

/// The worker process: one consumer per hop, `concurrency` deliveries at
/// a time each, until `shutdown`.
pub async fn worker(
    url: &str,
    base: &str,
    prefetch: u16,
    concurrency: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let conn = connect(url).await?;
    let mut hops = JoinSet::new();
    for hop in 1..=HOPS {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        hops.spawn(run_hop(
            channel,
            queue(base, hop),
            queue(base, hop + 1),
            concurrency,
        ));
    }
    tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        Some(ended) = hops.join_next() => ended?,
    }
}

async fn run_hop(
    channel: Channel,
    from: String,
    to: String,
    concurrency: usize,
) -> anyhow::Result<()> {
    let mut consumer = channel
        .basic_consume(
            from.as_str().into(),
            format!("raw-{from}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let slots = Arc::new(Semaphore::new(concurrency));
    let to = Arc::new(to);
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let slot = slots.clone().acquire_owned().await?;
        let (channel, to) = (channel.clone(), to.clone());
        tokio::spawn(async move {
            let headers = hop_headers(delivery.properties.headers());
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers);
            let published = async {
                channel
                    .basic_publish(
                        "".into(),
                        to.as_str().into(),
                        BasicPublishOptions::default(),
                        &delivery.data,
                        properties,
                    )
                    .await?
                    .await
            };
            // Unconfirmed: leave it unacked, the broker redelivers it.
            if published.await.is_ok() {
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
            drop(slot);
        });
    }
    Ok(())
}

/// Adds this hop's latency to the `hops` list and restamps `sent-us`.
pub(crate) fn hop_headers(incoming: &Option<FieldTable>) -> FieldTable {
    let now = now_us();
    let get = |name: &str| incoming.as_ref().and_then(|h| h.inner().get(name).cloned());
    let sent = match get("sent-us") {
        Some(AMQPValue::LongLongInt(us)) => us,
        _ => now,
    };
    let mut hops = match get("hops") {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        _ => String::new(),
    };
    if !hops.is_empty() {
        hops.push(',');
    }
    hops.push_str(&(now - sent).to_string());
    let mut headers = FieldTable::default();
    headers.insert("sent-us".into(), AMQPValue::LongLongInt(now));
    headers.insert("hops".into(), AMQPValue::LongString(LongString::from(hops)));
    headers
}

/// The load generator both pipelines share: persistent messages into one
/// queue on one confirming channel, every confirm awaited at the end.
pub async fn publish_pipelined(
    conn: &Connection,
    queue: &str,
    bodies: impl Iterator<Item = Vec<u8>>,
) -> anyhow::Result<()> {
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    for body in bodies {
        let mut headers = FieldTable::default();
        headers.insert("sent-us".into(), AMQPValue::LongLongInt(now_us()));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        let pending = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await?;
        // Pipelined: awaited all at once below.
        drop(pending);
    }
    channel.wait_for_confirms().await?;
    Ok(())
}

/// Publishes `orders` messages into hop 1 and waits until all come out of
/// hop 4.
pub async fn drive(
    url: &str,
    base: &str,
    orders: usize,
    worker_pid: u32,
) -> anyhow::Result<Driven> {
    let conn = connect(url).await?;
    let done_channel = conn.create_channel().await?;
    let mut done = done_channel
        .basic_consume(
            queue(base, HOPS + 1).as_str().into(),
            "raw-driver".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let started = Instant::now();
    let bodies = (0..orders).map(|n| format!("{{\"order_id\":\"raw-{n}\"}}").into_bytes());
    publish_pipelined(&conn, &queue(base, 1), bodies).await?;

    let mut hops_ms = Vec::with_capacity(orders * HOPS);
    let mut received = 0;
    while received < orders {
        let delivery = tokio::time::timeout(Duration::from_secs(60), done.next())
            .await
            .map_err(|_| {
                anyhow::anyhow!("raw pipeline stalled after {received} of {orders} orders")
            })?
            .ok_or_else(|| anyhow::anyhow!("done consumer ended"))??;
        if let Some(AMQPValue::LongString(list)) = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("hops").cloned())
        {
            hops_ms.extend(
                list.to_string()
                    .split(',')
                    .filter_map(|us| us.parse::<f64>().ok())
                    .map(|us| us / 1000.0),
            );
        }
        delivery.ack(BasicAckOptions::default()).await?;
        received += 1;
    }
    Ok(Driven {
        elapsed: started.elapsed(),
        cpu_at_end: CpuSample::take(worker_pid),
        hops_ms,
    })
}
