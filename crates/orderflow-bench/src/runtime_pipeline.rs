//! The four no-op hops through the orderflow runtime: consume → lease →
//! idempotency record → state CAS + audit → confirmed publish → ack.

use crate::measure::{CpuSample, Driven};
use orderflow_broker::{Consumer, ConsumerConfig, Publisher, TopologySpec};
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Policy, Stage};
use orderflow_runtime::noop::{NoopStage, Runs};
use orderflow_runtime::{Env, StageRunner, StepMessage};
use orderflow_store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Connection settings shared by the driver and the worker process.
#[derive(Debug, Clone)]
pub struct Target {
    pub amqp_url: String,
    pub redis_url: String,
    pub namespace: String,
}

pub async fn store(target: &Target) -> anyhow::Result<Store> {
    Ok(Store::connect(&target.redis_url, &target.namespace).await?)
}

/// What each no-op hop publishes.
#[derive(Debug, Clone, Copy)]
pub struct Hops {
    /// A customer event besides the next stage's message.
    pub events: bool,
}

/// The worker process: one runner per stage until `shutdown`.
pub async fn worker(
    target: &Target,
    policy: Policy,
    hops: Hops,
    prefetch: u16,
    concurrency: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let policy = Arc::new(policy);
    let spec = TopologySpec::from_policy(&target.namespace, &policy)?;
    let env = Env {
        store: store(target).await?,
        policy_id: policy.id(),
        policy,
        spec: Arc::new(spec.clone()),
        actor: format!("runtime-bench/{}", std::process::id()),
    };
    // One publishing connection for the process, as a single-stage worker has.
    let publisher = Publisher::lazy(&target.amqp_url, &format!("{}.worker", target.namespace));
    let mut stages = JoinSet::new();
    for stage in Stage::ALL {
        let logic = NoopStage::new(stage, Runs::default());
        let logic = if hops.events {
            logic.with_events()
        } else {
            logic
        };
        let runner = StageRunner::new(logic, env.clone());
        let config = ConsumerConfig {
            amqp_url: target.amqp_url.clone(),
            queue: spec.names().work_queue(stage),
            prefetch,
            concurrency,
            shutdown_grace: Duration::from_secs(5),
            consumer_tag_prefix: format!("{}.{stage}", target.namespace),
        };
        let (spec, publisher, shutdown) = (spec.clone(), publisher.clone(), shutdown.clone());
        stages.spawn(async move {
            Consumer::run_with(config, spec, runner, &publisher, shutdown).await
        });
    }
    while let Some(ended) = stages.join_next().await {
        ended??;
    }
    publisher.close().await;
    Ok(())
}

/// Creates `orders` orders (untimed), hands them all to the inventory
/// stage and waits until every one is delivered. Hop latencies come from the
/// audit entries' server times.
pub async fn drive(
    target: &Target,
    policy: &Policy,
    orders: usize,
    worker_pid: u32,
) -> anyhow::Result<Driven> {
    let store = store(target).await?;
    let spec = TopologySpec::from_policy(&target.namespace, policy)?;
    let ids = create_orders(&store, policy, "bench", orders).await?;

    let started = Instant::now();
    let sent_at_ms = jiff::Timestamp::now().as_millisecond();
    publish_steps(target, &spec, &ids).await?;
    wait_until_all(
        &store,
        OrderState::Delivered,
        orders,
        Duration::from_secs(120),
    )
    .await?;
    let elapsed = started.elapsed();
    let cpu_at_end = CpuSample::take(worker_pid);

    let mut hops_ms = Vec::with_capacity(orders * 4);
    for id in &ids {
        let audit = store.order_audit(id).await?;
        let mut previous = sent_at_ms;
        for entry in audit.iter().filter(|e| e.from.is_some()) {
            let at = entry.at.as_millisecond();
            hops_ms.push((at - previous) as f64);
            previous = at;
        }
    }
    Ok(Driven {
        elapsed,
        cpu_at_end,
        hops_ms,
    })
}

pub async fn create_orders(
    store: &Store,
    policy: &Policy,
    prefix: &str,
    orders: usize,
) -> anyhow::Result<Vec<OrderId>> {
    let mut ids = Vec::with_capacity(orders);
    for n in 0..orders {
        let id = OrderId::parse(&format!("{prefix}-{n}")).expect("a valid id");
        store
            .create_order(
                &id,
                &serde_json::json!({"order_id": id}),
                &format!("corr-{id}"),
                &policy.id(),
                "runtime-bench",
            )
            .await?;
        ids.push(id);
    }
    Ok(ids)
}

/// Hands the orders to the inventory stage, with the same load generator as
/// the raw pipeline.
pub async fn publish_steps(
    target: &Target,
    spec: &TopologySpec,
    ids: &[OrderId],
) -> anyhow::Result<()> {
    let conn = crate::raw::connect(&target.amqp_url).await?;
    let queue = spec.names().work_queue(Stage::Inventory);
    let bodies = ids
        .iter()
        .map(|id| StepMessage::new(id, Stage::Inventory).to_bytes());
    crate::raw::publish_pipelined(&conn, &queue, bodies).await
}

pub async fn wait_until_all(
    store: &Store,
    state: OrderState,
    orders: usize,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let count = store
            .count_by_state()
            .await?
            .get(&state)
            .copied()
            .unwrap_or(0);
        if count as usize >= orders {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("only {count} of {orders} orders reached {state} within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
