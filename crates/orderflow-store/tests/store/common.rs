use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Policy, PolicyId};
use orderflow_store::{Store, Transition};
use redis::Commands;
use serde_json::{Value, json};

const START_REDIS: &str = "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
                           --save \"\" --appendonly no";
const START_CLUSTER: &str = "scripts/clusters.sh up";

/// What a test runs against: every store test runs once on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One Redis: `ORDERFLOW_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`.
    Single,
    /// The Redis Cluster of `scripts/clusters.sh`:
    /// `ORDERFLOW_TEST_REDIS_CLUSTER_URL`, default its three first masters.
    Cluster,
}

impl Backend {
    pub fn url(self) -> String {
        match self {
            Backend::Single => std::env::var("ORDERFLOW_TEST_REDIS_URL")
                .unwrap_or_else(|_| orderflow_settings::DEFAULT_REDIS_URL.into()),
            Backend::Cluster => {
                std::env::var("ORDERFLOW_TEST_REDIS_CLUSTER_URL").unwrap_or_else(|_| {
                    "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".into()
                })
            }
        }
    }

    /// The cluster's seed nodes as plain `redis://` URLs.
    pub fn cluster_seeds() -> Vec<String> {
        let url = Backend::Cluster.url();
        let hosts = url
            .strip_prefix("redis+cluster://")
            .expect("ORDERFLOW_TEST_REDIS_CLUSTER_URL is a redis+cluster:// URL");
        hosts.split(',').map(|h| format!("redis://{h}")).collect()
    }

    fn how_to_start(self) -> String {
        match self {
            Backend::Single => format!(
                "These tests need a running Redis. Start one with:\n    {START_REDIS}\n\
                 or point ORDERFLOW_TEST_REDIS_URL at one."
            ),
            Backend::Cluster => format!(
                "These tests also run against a Redis Cluster. Start the project's one with:\n    \
                 {START_CLUSTER}\nor point ORDERFLOW_TEST_REDIS_CLUSTER_URL at one \
                 (redis+cluster://host:port,host:port)."
            ),
        }
    }
}

/// Generates, for `async fn $name(backend: Backend)`, a module `$name` with
/// one test per backend (`$name::single_node`, `$name::cluster`).
macro_rules! both {
    ($name:ident) => {
        mod $name {
            use $crate::common::Backend;
            #[tokio::test]
            async fn single_node() {
                super::$name(Backend::Single).await
            }
            #[tokio::test]
            async fn cluster() {
                super::$name(Backend::Cluster).await
            }
        }
    };
    ($name:ident, multi_thread) => {
        mod $name {
            use $crate::common::Backend;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn single_node() {
                super::$name(Backend::Single).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                super::$name(Backend::Cluster).await
            }
        }
    };
}

/// A namespace of its own for one test; its keys are deleted on drop, even
/// when the test fails.
pub struct TestNs {
    pub ns: String,
    pub backend: Backend,
    pub store: Store,
}

impl TestNs {
    pub async fn new(backend: Backend) -> TestNs {
        let ns = format!("test-{}", uuid::Uuid::new_v4());
        let store = TestNs::connect_to(backend, &ns).await;
        TestNs { ns, backend, store }
    }

    /// Another store (its own connection) in this namespace: another worker.
    pub async fn connect(&self) -> Store {
        TestNs::connect_to(self.backend, &self.ns).await
    }

    async fn connect_to(backend: Backend, ns: &str) -> Store {
        let url = backend.url();
        match Store::connect(&url, ns).await {
            Ok(store) => store,
            Err(err) => panic!(
                "cannot reach Redis at {url}: {err}\n{}",
                backend.how_to_start()
            ),
        }
    }

    /// A plain connection for poking at keys the store API does not expose.
    pub fn raw(&self) -> Raw {
        match self.backend {
            Backend::Single => Raw::Node(
                redis::Client::open(self.backend.url())
                    .and_then(|client| client.get_connection())
                    .expect("raw redis connection"),
            ),
            Backend::Cluster => Raw::Cluster(Box::new(
                redis::cluster::ClusterClient::new(Backend::cluster_seeds())
                    .and_then(|client| client.get_connection())
                    .expect("raw redis cluster connection"),
            )),
        }
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.ns)
    }

    /// Every node that holds keys: the one Redis, or each cluster master.
    fn key_holders(&self) -> Vec<redis::Connection> {
        let connect = |url: &str| redis::Client::open(url).and_then(|c| c.get_connection());
        match self.backend {
            Backend::Single => connect(&self.backend.url()).into_iter().collect(),
            Backend::Cluster => {
                let Some(nodes) = Backend::cluster_seeds().iter().find_map(|seed| {
                    redis::cmd("CLUSTER")
                        .arg("NODES")
                        .query::<String>(&mut connect(seed).ok()?)
                        .ok()
                }) else {
                    return Vec::new();
                };
                nodes
                    .lines()
                    .filter_map(|line| {
                        let fields: Vec<&str> = line.split_whitespace().collect();
                        let serving = fields.len() > 8
                            && fields[2].contains("master")
                            && !fields[2].contains("fail");
                        let address = fields.get(1)?.split('@').next()?;
                        serving.then(|| connect(&format!("redis://{address}")).ok())?
                    })
                    .collect()
            }
        }
    }
}

/// A plain connection to one Redis or to the cluster.
pub enum Raw {
    Node(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl redis::ConnectionLike for Raw {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        match self {
            Raw::Node(c) => c.req_packed_command(cmd),
            Raw::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        match self {
            Raw::Node(c) => c.req_packed_commands(cmd, offset, count),
            Raw::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        match self {
            Raw::Node(c) => c.req_command(cmd),
            Raw::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Raw::Node(c) => c.get_db(),
            Raw::Cluster(c) => c.get_db(),
        }
    }

    fn supports_pipelining(&self) -> bool {
        match self {
            Raw::Node(c) => c.supports_pipelining(),
            Raw::Cluster(c) => c.supports_pipelining(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Raw::Node(c) => c.check_connection(),
            Raw::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Raw::Node(c) => c.is_open(),
            Raw::Cluster(c) => c.is_open(),
        }
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        // Each node deletes what it holds: a cluster node scans only its own.
        for mut conn in self.key_holders() {
            let keys: Vec<String> = match conn.scan_match(format!("{}:*", self.ns)) {
                Ok(iter) => iter.filter_map(Result::ok).collect(),
                Err(_) => continue,
            };
            for key in keys {
                let _: redis::RedisResult<()> = conn.del(key);
            }
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
