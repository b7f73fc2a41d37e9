//! Shared by the integration tests: a namespace of its own per test against
//! the real RabbitMQ, deleted again when the test ends (even by a panic).
//! A test that cannot reach RabbitMQ fails and says how to start it.

use orderflow_broker::rabbitmqctl;
use orderflow_broker::{
    Connection, ConsumerConfig, Error, Handler, TopologySpec, admin, chain, connect, topology,
};
use orderflow_core::Policy;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub fn amqp_url() -> String {
    std::env::var("ORDERFLOW_AMQP_URL")
        .unwrap_or_else(|_| orderflow_settings::DEFAULT_AMQP_URL.to_owned())
}

pub async fn broker() -> Connection {
    match connect(&amqp_url()).await {
        Ok(connection) => connection,
        Err(e) => panic!(
            "these tests need RabbitMQ and it is not reachable: {}\n\
             start it with `rabbitmq-server -detached` (as root), or point \
             ORDERFLOW_AMQP_URL at one",
            chain(&e)
        ),
    }
}

/// A policy from the defaults plus `overrides` (TOML).
pub fn policy(overrides: &str) -> Policy {
    orderflow_core::policy::parse(overrides, "test").expect("test policy is valid")
}

/// One test's namespace, declared; deleted on drop.
pub struct Fixture {
    pub connection: Connection,
    pub spec: TopologySpec,
}

impl Fixture {
    pub async fn new(policy_overrides: &str) -> Fixture {
        // Logs show with `--nocapture`; RUST_LOG overrides the level.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "orderflow_broker=info".into()),
            )
            .try_init();
        let connection = broker().await;
        let namespace = format!("t-{}", uuid::Uuid::new_v4());
        let spec = TopologySpec::from_policy(&namespace, &policy(policy_overrides))
            .expect("test namespace is valid");
        topology::declare(&connection, &spec)
            .await
            .unwrap_or_else(|e| panic!("declare: {}", chain(&e)));
        Fixture { connection, spec }
    }

    pub fn namespace(&self) -> &str {
        self.spec.names().namespace()
    }

    pub async fn depth(&self, queue: &str) -> u32 {
        admin::queue_depth(&self.connection, queue)
            .await
            .unwrap_or_else(|e| panic!("depth of {queue}: {}", chain(&e)))
    }

    /// The depth once no delivery of `queue` is unacknowledged: the broker
    /// has taken the acks, or returned the messages of channels just closed
    /// (it does so a few milliseconds after the close).
    pub async fn settled_depth(&self, queue: &str) -> u32 {
        let name = queue.to_owned();
        eventually(Duration::from_secs(10), "no unacked deliveries", || {
            let name = name.clone();
            async move {
                tokio::task::spawn_blocking(move || unacked(&name))
                    .await
                    .unwrap()
                    == 0
            }
        })
        .await;
        self.depth(queue).await
    }

    /// Waits for a message in `queue` and takes it (acked).
    pub async fn take(&self, queue: &str, within: Duration) -> orderflow_broker::Incoming {
        let deadline = Instant::now() + within;
        loop {
            if let Some(fetched) = admin::get(&self.connection, queue)
                .await
                .unwrap_or_else(|e| panic!("get from {queue}: {}", chain(&e)))
            {
                let message = fetched.message().clone();
                fetched
                    .settle(orderflow_broker::Settlement::Ack)
                    .await
                    .expect("ack a fetched message");
                return message;
            }
            assert!(
                Instant::now() < deadline,
                "no message arrived in {queue} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn consumer_config(&self, queue: &str) -> ConsumerConfig {
        ConsumerConfig {
            amqp_url: amqp_url(),
            queue: queue.to_owned(),
            prefetch: 10,
            concurrency: 4,
            shutdown_grace: Duration::from_secs(5),
            consumer_tag_prefix: self.namespace().to_owned(),
        }
    }

    /// Runs a consumer in the background until the returned token is
    /// cancelled; await the handle for its result.
    pub fn spawn_consumer<H: Handler>(
        &self,
        config: ConsumerConfig,
        handler: H,
    ) -> (CancellationToken, JoinHandle<Result<(), Error>>) {
        let token = CancellationToken::new();
        let run =
            orderflow_broker::Consumer::run(config, self.spec.clone(), handler, token.clone());
        (token, tokio::spawn(run))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let spec = self.spec.clone();
        // Drop cannot await, and the test's runtime may be unwinding: delete
        // from a thread with a runtime of its own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup");
            runtime.block_on(async {
                let connection = broker().await;
                topology::delete(&connection, &spec).await
            })
        })
        .join();
        if let Ok(Err(e)) = deleted {
            eprintln!("cleanup of {} failed: {}", self.namespace(), chain(&e));
        }
    }
}

/// Deliveries of `queue` the broker waits an ack for, as `rabbitmqctl`
/// lists them (AMQP tells only the ready count).
pub fn unacked(queue: &str) -> u64 {
    rabbitmqctl::queue_counts()
        .unwrap_or_else(|e| panic!("this test needs `rabbitmqctl` (RabbitMQ's CLI): {e}"))
        .get(queue)
        .unwrap_or_else(|| panic!("rabbitmqctl does not list {queue}"))
        .unacked
}

/// Polls `check` until it is true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops a background consumer and checks it stopped cleanly.
pub async fn stop(token: CancellationToken, run: JoinHandle<Result<(), Error>>) {
    token.cancel();
    let result = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("the consumer stops within 15 s")
        .expect("the consumer task did not panic");
    if let Err(e) = result {
        panic!("the consumer failed: {}", chain(&e));
    }
}

/// Channels open on the connection named `connection_name`, as
/// `rabbitmqctl` lists them.
pub fn channels_of(connection_name: &str) -> u64 {
    rabbitmqctl::list_connections()
        .unwrap_or_else(|e| panic!("this test needs `rabbitmqctl` (RabbitMQ's CLI): {e}"))
        .iter()
        .find(|c| c.name == connection_name)
        .unwrap_or_else(|| panic!("rabbitmqctl does not list a connection named {connection_name}"))
        .channels
}
