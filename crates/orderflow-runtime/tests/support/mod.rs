//! A small fleet for the runtime's tests: the three stages run by
//! `StageRunner`s around the no-op logic (one state per hop, four hops),
//! on the real RabbitMQ and Redis, in a namespace of its own that is deleted
//! afterwards.

use orderflow_broker::{Connection, Consumer, ConsumerConfig, Meta, Publisher, TopologySpec};
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Policy, Stage};
use orderflow_runtime::noop::{NoopStage, Runs};
use orderflow_runtime::{Env, StageRunner, StepMessage};
use orderflow_store::{OrderRecord, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use orderflow_testkit::services::{amqp_url, redis_url};

/// A policy with short delay tiers, so deferred copies come back quickly.
pub fn test_policy() -> Policy {
    let text = "[stages.inventory]\ndelay_tiers = [\"200ms\", \"1s\"]\n\
                [stages.payment]\ndelay_tiers = [\"200ms\", \"1s\"]\n\
                [stages.shipping]\ndelay_tiers = [\"200ms\", \"1s\"]\n";
    orderflow_core::policy::parse(text, "test").expect("test policy is valid")
}

pub struct Fleet {
    pub ns: String,
    pub store: Store,
    pub conn: Connection,
    pub spec: Arc<TopologySpec>,
    pub publisher: Publisher,
    pub runs: Runs,
    env: Env,
    shutdown: CancellationToken,
    workers: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Declares a fresh namespace and starts one runner per stage.
    pub async fn start(redis_url: &str) -> Fleet {
        let ns = format!("t-{}", uuid::Uuid::new_v4().simple());
        let policy = Arc::new(test_policy());
        let store = Store::connect(redis_url, &ns).await.unwrap_or_else(|e| {
            panic!("cannot reach Redis at {redis_url}: {e}\nstart it: redis-server --daemonize yes --port 6379 --save \"\" --appendonly no")
        });
        let amqp_url = amqp_url();
        let conn = orderflow_broker::connect(&amqp_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach RabbitMQ at {amqp_url}: {e}\nstart it: rabbitmq-server -detached"
                )
            });
        let spec = Arc::new(TopologySpec::from_policy(&ns, &policy).unwrap());
        orderflow_broker::declare(&conn, &spec).await.unwrap();
        let publisher = Publisher::connect(&amqp_url, &format!("{ns}.test"))
            .await
            .unwrap();
        let env = Env {
            store: store.clone(),
            policy_id: policy.id(),
            policy,
            spec: spec.clone(),
            actor: "runtime-test".into(),
        };
        let mut fleet = Fleet {
            ns,
            store,
            conn,
            spec,
            publisher,
            runs: Runs::default(),
            env,
            shutdown: CancellationToken::new(),
            workers: Vec::new(),
        };
        for stage in Stage::ALL {
            fleet.spawn_worker(stage);
        }
        fleet
    }

    /// One more worker process for `stage` (a replica).
    pub fn spawn_worker(&mut self, stage: Stage) {
        let runner = StageRunner::new(
            NoopStage::new(stage, self.runs.clone()).with_events(),
            self.env.clone(),
        );
        let config = ConsumerConfig {
            amqp_url: amqp_url(),
            queue: self.spec.names().work_queue(stage),
            prefetch: 20,
            concurrency: 8,
            shutdown_grace: Duration::from_secs(2),
            consumer_tag_prefix: format!("{}.{stage}", self.ns),
        };
        let (spec, shutdown) = ((*self.spec).clone(), self.shutdown.clone());
        self.workers.push(tokio::spawn(async move {
            Consumer::run(config, spec, runner, shutdown)
                .await
                .expect("consumer runs");
        }));
    }

    /// Creates the order in the store and hands it to the inventory stage.
    pub async fn place(&self, order_id: &str) -> OrderId {
        let id = OrderId::parse(order_id).unwrap();
        let body = serde_json::json!({"order_id": order_id});
        self.store
            .create_order(
                &id,
                &body,
                &format!("corr-{order_id}"),
                &self.env.policy_id,
                "test",
            )
            .await
            .unwrap();
        self.publish_step(&id, Stage::Inventory, &format!("place-{order_id}"))
            .await;
        id
    }

    pub async fn publish_step(&self, id: &OrderId, stage: Stage, message_id: &str) {
        let meta = Meta {
            message_id: Some(message_id.into()),
            ..Meta::default()
        };
        let queue = self.spec.names().work_queue(stage);
        self.publisher
            .to_queue(&queue, StepMessage::new(id, stage).to_bytes(), meta)
            .await
            .unwrap();
    }

    /// Waits until every order is in `state`; fails after `within`.
    pub async fn wait_all(
        &self,
        ids: &[OrderId],
        state: OrderState,
        within: Duration,
    ) -> Vec<OrderRecord> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut records = Vec::new();
            for id in ids {
                if let Some(record) = self.store.get_order(id).await.unwrap() {
                    records.push(record);
                }
            }
            if records.len() == ids.len() && records.iter().all(|r| r.state == state) {
                return records;
            }
            if tokio::time::Instant::now() > deadline {
                let states: Vec<_> = records
                    .iter()
                    .map(|r| (r.order_id.to_string(), r.state))
                    .collect();
                panic!("not every order reached {state} within {within:?}: {states:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn store_policy_id(&self) -> orderflow_core::PolicyId {
        self.env.policy_id.clone()
    }

    /// How often the hop into `state` ran its work for the order.
    pub fn runs_into(&self, id: &OrderId, state: OrderState) -> u32 {
        self.runs
            .lock()
            .unwrap()
            .get(&(id.to_string(), state))
            .copied()
            .unwrap_or(0)
    }

    pub async fn depth(&self, queue: &str) -> u32 {
        orderflow_broker::admin::queue_depth(&self.conn, queue)
            .await
            .unwrap()
    }

    /// Stops the workers, deletes the namespace's queues and keys.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for worker in self.workers {
            let _ = worker.await;
        }
        self.publisher.close().await;
        let _ = orderflow_broker::topology::delete(&self.conn, &self.spec).await;
        let _ = self.store.purge_namespace().await;
    }
}
