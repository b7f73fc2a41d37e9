use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Policy, PolicyId};
use orderflow_store::{Store, Transition};
use redis::Commands;
use serde_json::{Value, json};

const START_REDIS: &str = "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
                           --save \"\" --appendonly no";

pub fn redis_url() -> String {
    std::env::var("ORDERFLOW_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A namespace of its own for one test; its keys are deleted on drop, even
/// when the test fails.
pub struct TestNs {
    pub ns: String,
    pub store: Store,
}

impl TestNs {
    pub async fn new() -> TestNs {
        let ns = format!("test-{}", uuid::Uuid::new_v4());
        let store = TestNs::connect_to(&ns).await;
        TestNs { ns, store }
    }

    /// Another store (its own connection) in this namespace: another worker.
    pub async fn connect(&self) -> Store {
        TestNs::connect_to(&self.ns).await
    }

    async fn connect_to(ns: &str) -> Store {
        let url = redis_url();
        match Store::connect(&url, ns).await {
            Ok(store) => store,
            Err(err) => panic!(
                "cannot reach Redis at {url}: {err}\n\
                 These tests need a running Redis. Start one with:\n    {START_REDIS}\n\
                 or point ORDERFLOW_TEST_REDIS_URL at one."
            ),
        }
    }

    /// A plain connection for poking at keys the store API does not expose.
    pub fn raw(&self) -> redis::Connection {
        redis::Client::open(redis_url())
            .and_then(|client| client.get_connection())
            .expect("raw redis connection")
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.ns)
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) else {
            return;
        };
        let keys: Vec<String> = match conn.scan_match(format!("{}:*", self.ns)) {
            Ok(iter) => iter.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = conn.del(keys);
        }
    }
}

pub fn policy() -> PolicyId {
    Policy::default_policy().id()
}

pub fn order_id(name: &str) -> OrderId {
    OrderId::parse(name).expect("valid order id")
}

pub fn body(id: &str) -> Value {
    json!({ "schema": "order.placed/v1", "order_id": id, "customer_id": "c-1", "total": 1200 })
}

pub async fn create(store: &Store, id: &OrderId) {
    store
        .create_order(id, &body(id.as_str()), "corr-1", &policy(), "test")
        .await
        .expect("create order");
}

/// A plain move with nothing optional set.
pub fn mv(expected_version: u64, from: OrderState, to: OrderState) -> Transition {
    Transition {
        expected_version,
        from,
        to,
        reason: None,
        event: format!("test.{to}"),
        actor: "test-worker".into(),
        correlation_id: "corr-1".into(),
        policy_id: policy(),
        rule: None,
        fields_to_set: Vec::new(),
        idempotency: None,
        fencing: None,
        release_lease: false,
    }
}
