//! One test's fleet: a namespace of its own (`t-<uuid>`) on the real
//! RabbitMQ and Redis, declared from the default policy, deleted again when
//! the test ends, even by a panic. Without RabbitMQ or Redis a test fails
//! and says how to start them.

use orderflow_broker::{Connection, Incoming, Meta, Publisher, TopologySpec, admin};
use orderflow_core::message::OrderId;
use orderflow_core::{Certainty, FailureClass, OrderState, Policy, Stage};
use orderflow_ops::exceptions::{ExceptionQueues, Operator};
use orderflow_store::{Store, Transition};
use serde_json::{Value, json};
use std::time::Duration;

pub use orderflow_testkit::services::{amqp_url, redis_url};

pub struct Fleet {
    pub ns: String,
    pub spec: TopologySpec,
    pub policy: Policy,
    pub connection: Connection,
    pub store: Store,
    pub queues: ExceptionQueues,
    pub publisher: Publisher,
}

impl Fleet {
    pub async fn new() -> Fleet {
        let ns = format!("t-{}", uuid::Uuid::new_v4().simple());
        let policy = Policy::default_policy();
        let spec = TopologySpec::from_policy(&ns, &policy).expect("test namespace is valid");
        let connection = orderflow_broker::connect(&amqp_url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "these tests need RabbitMQ at {} and it is not reachable: {}\n\
                     start it with `rabbitmq-server -detached`, or point ORDERFLOW_AMQP_URL at one",
                    orderflow_broker::without_password(&amqp_url()),
                    orderflow_broker::chain(&e)
                )
            });
        orderflow_broker::declare(&connection, &spec)
            .await
            .unwrap_or_else(|e| panic!("declare: {}", orderflow_broker::chain(&e)));
        let store = Store::connect(&redis_url(), &ns).await.unwrap_or_else(|e| {
            panic!(
                "these tests need Redis at {} and it is not reachable: {e}\n\
                 start it with `redis-server --daemonize yes`, or point ORDERFLOW_REDIS_URL at one",
                redis_url()
            )
        });
        let queues = ExceptionQueues::connect(&amqp_url(), &ns)
            .await
            .expect("exception queues");
        let publisher = Publisher::connect(&amqp_url(), "ops-test")
            .await
            .expect("publisher");
        Fleet {
            ns,
            spec,
            policy,
            connection,
            store,
            queues,
            publisher,
        }
    }

    pub fn operator(&self) -> Operator<'_> {
        Operator {
            store: &self.store,
            policy: &self.policy,
            actor: "tester",
        }
    }

    pub fn exceptions(&self, stage: Stage) -> String {
        self.spec.names().exception_queue(stage)
    }

    pub fn work(&self, stage: Stage) -> String {
        self.spec.names().work_queue(stage)
    }

    /// Ready messages in `queue`, once the broker has returned what closed
    /// channels held (it does so a moment after the close).
    pub async fn depth(&self, queue: &str) -> u32 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        admin::queue_depth(&self.connection, queue)
            .await
            .expect("queue depth")
    }

    /// Puts a message into the stage's exception queue.
    pub async fn park(&self, stage: Stage, body: &[u8], meta: Meta) {
        self.publisher
            .to_queue(&self.exceptions(stage), body.to_vec(), meta)
            .await
            .expect("parked");
    }

    /// Parks the order's step message as an escalation would.
    pub async fn park_step(&self, stage: Stage, order: &str, id: &str, reason: &str) {
        let meta = escalation(stage, order, id, reason);
        self.park(stage, &step(order, stage), meta).await;
    }

    /// Every message of `queue`, taken (acked).
    pub async fn drain(&self, queue: &str) -> Vec<Incoming> {
        let mut taken = Vec::new();
        while let Some(fetched) = admin::get(&self.connection, queue).await.expect("get") {
            taken.push(fetched.message().clone());
            fetched
                .settle(orderflow_broker::Settlement::Ack)
                .await
                .expect("ack");
        }
        taken
    }

    /// An order in `state`, reached by legal moves.
    pub async fn order_in(&self, id: &str, state: OrderState) -> OrderId {
        let order = OrderId::parse(id).expect("order id");
        self.store
            .create_order(&order, &placed(id), id, &self.policy.id(), "test")
            .await
            .expect("create order");
        let path: &[(OrderState, OrderState)] = match state {
            OrderState::Received => &[],
            OrderState::Reserved => &[(OrderState::Received, OrderState::Reserved)],
            OrderState::Escalated => &[(OrderState::Received, OrderState::Escalated)],
            OrderState::Paid => &[
                (OrderState::Received, OrderState::Reserved),
                (OrderState::Reserved, OrderState::Paid),
            ],
            other => panic!("no test path to {other}"),
        };
        for (version, (from, to)) in path.iter().enumerate() {
            self.store
                .transition(&order, &transition(version as u64 + 1, *from, *to))
                .await
                .expect("move order");
        }
        order
    }

    /// Closes the connections; dropping the fleet deletes the namespace.
    pub async fn stop(self) {
        self.queues.close().await;
        self.publisher.close().await;
    }
}

impl Drop for Fleet {
    /// Deletes the namespace's queues, exchanges and keys, also when the
    /// test failed (on a thread of its own: drop cannot await).
    fn drop(&mut self) {
        let (spec, ns) = (self.spec.clone(), self.ns.clone());
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                if let Ok(connection) = orderflow_broker::connect(&amqp_url()).await {
                    let _ = orderflow_broker::topology::delete(&connection, &spec).await;
                }
                if let Ok(store) = Store::connect(&redis_url(), &ns).await {
                    let _ = store.purge_namespace().await;
                }
            });
        })
        .join();
        if cleaned.is_err() && !std::thread::panicking() {
            panic!("cleaning up namespace {} failed", self.ns);
        }
    }
}

fn transition(expected_version: u64, from: OrderState, to: OrderState) -> Transition {
    Transition {
        expected_version,
        from,
        to,
        reason: to
            .requires_reason()
            .then(|| "payment_unresolved".to_owned()),
        event: format!("test.{to}"),
        actor: "test".into(),
        correlation_id: "test".into(),
        policy_id: Policy::default_policy().id(),
        rule: None,
        fields_to_set: vec![],
        idempotency: None,
        fencing: None,
        release_lease: false,
    }
}

/// A valid `order.placed/v1`.
pub fn placed(id: &str) -> Value {
    json!({
        "schema": "order.placed/v1",
        "order_id": id,
        "customer_id": "cust-1",
        "items": [{"sku": "SKU-1", "quantity": 1, "unit_price": 1250}],
        "currency": "EUR",
        "payment_token": "tok_ok",
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"},
        "placed_at": "2026-11-28T10:15:00Z"
    })
}

pub fn step(order: &str, stage: Stage) -> Vec<u8> {
    json!({"schema": "orderflow.step/v1", "order_id": order, "stage": stage})
        .to_string()
        .into_bytes()
}

/// The headers of a step message parked by an escalation after `attempt`
/// runs with an unknown outcome.
pub fn escalation(stage: Stage, order: &str, id: &str, reason: &str) -> Meta {
    Meta {
        message_id: Some(id.to_owned()),
        correlation_id: Some(order.to_owned()),
        timestamp: Some(1_764_325_000),
        stage: Some(stage),
        attempt: Some(4),
        // Recent: a replay refuses steps first tried before the replay window.
        first_attempt_at: Some(jiff::Timestamp::now().as_millisecond() - 3_600_000),
        class: Some(FailureClass::Timeout),
        certainty: Some(Certainty::Unknown),
        reason: Some(reason.to_owned()),
        policy_id: Some("pol-old".into()),
        last_error: Some("504 from payment".into()),
        order_id: Some(order.to_owned()),
        ..Meta::default()
    }
}

/// A malformed producer message as the inventory stage parks it.
pub fn malformed(id: &str, problems: &str) -> Meta {
    Meta {
        message_id: Some(id.to_owned()),
        timestamp: Some(1_764_325_000),
        stage: Some(Stage::Inventory),
        class: Some(FailureClass::Malformed),
        reason: Some("malformed".into()),
        ..Meta::default()
    }
    .with_extra("validation-errors", problems)
}

/// A temporary file path of this test's own, removed when dropped.
pub struct TempPath(pub std::path::PathBuf);

impl TempPath {
    pub fn new(name: &str) -> TempPath {
        TempPath(std::env::temp_dir().join(format!(
            "orderflow-ops-{}-{name}",
            uuid::Uuid::new_v4().simple()
        )))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
