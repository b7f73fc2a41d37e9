//! What a running worker tells the fleet and hears from it, against the
//! real RabbitMQ and Redis (`ORDERFLOW_TEST_AMQP_URL`,
//! `ORDERFLOW_TEST_REDIS_URL`; defaults on 127.0.0.1): its heartbeat while
//! it runs (gone once it drains), and a pause of its stage, which stops it
//! taking deliveries until resumed. The namespace is the test's own and is
//! deleted when it ends.

mod common;

use common::{amqp_url, empty_api, redis_url};
use orderflow_broker::{Meta, Publisher, TopologySpec, admin};
use orderflow_core::decide::BreakerState;
use orderflow_core::{Policy, Stage};
use orderflow_store::{LiveWorker, Store};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Fixture {
    name: String,
    spec: TopologySpec,
    runtime: tokio::runtime::Runtime,
    connection: orderflow_broker::Connection,
    store: Store,
    worker: Option<Child>,
}

impl Fixture {
    fn new() -> Fixture {
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a test runtime");
        let spec = TopologySpec::from_policy(&name, &Policy::default_policy()).unwrap();
        let (connection, store) = runtime.block_on(async {
            let connection = orderflow_testkit::services::connect_broker().await;
            let store = orderflow_testkit::services::connect_store(&name).await;
            (connection, store)
        });
        Fixture {
            name,
            spec,
            runtime,
            connection,
            store,
            worker: None,
        }
    }

    /// Starts the payment worker; its APIs answer as the contract says,
    /// with no records.
    fn start_payment_worker(&mut self) {
        let api = empty_api();
        let mut command = Command::new(env!("CARGO_BIN_EXE_payment-worker"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ORDERFLOW_") {
                command.env_remove(name);
            }
        }
        command
            .env("ORDERFLOW_NAMESPACE", &self.name)
            .env("ORDERFLOW_AMQP_URL", amqp_url())
            .env("ORDERFLOW_REDIS_URL", redis_url())
            .env("ORDERFLOW_LISTEN", "127.0.0.1:0")
            .env("ORDERFLOW_ACTOR", "payment-worker@test/1")
            .env("ORDERFLOW_PAYMENT_URL", &api)
            .env("ORDERFLOW_INVENTORY_URL", &api)
            .env("ORDERFLOW_SHIPPING_URL", &api)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.worker = Some(command.spawn().expect("the worker starts"));
    }

    fn workers(&self) -> Vec<LiveWorker> {
        self.runtime.block_on(self.store.live_workers()).unwrap()
    }

    fn consumers(&self, queue: &str) -> u32 {
        self.runtime
            .block_on(admin::queue_stats(&self.connection, queue))
            .map_or(0, |stats| stats.consumers)
    }

    fn depth(&self, queue: &str) -> u32 {
        self.runtime
            .block_on(admin::queue_depth(&self.connection, queue))
            .unwrap()
    }

    fn publish(&self, queue: &str, body: &[u8]) {
        self.runtime.block_on(async {
            let publisher = Publisher::connect(&amqp_url(), "presence-test")
                .await
                .unwrap();
            publisher
                .to_queue(queue, body.to_vec(), Meta::default())
                .await
                .unwrap();
            publisher.close().await;
        });
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            let _ = worker.kill();
            let _ = worker.wait();
        }
        self.runtime.block_on(async {
            let _ = orderflow_broker::topology::delete(&self.connection, &self.spec).await;
            let _ = self.store.purge_namespace().await;
        });
    }
}

fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_worker_beats_while_it_runs_and_takes_nothing_while_its_stage_is_paused() {
    let mut fx = Fixture::new();
    fx.start_payment_worker();
    let queue = fx.spec.names().work_queue(Stage::Payment);
    let exceptions = fx.spec.names().exception_queue(Stage::Payment);

    eventually(Duration::from_secs(30), "a heartbeat", || {
        !fx.workers().is_empty()
    });
    let beat = fx.workers().remove(0).heartbeat;
    assert_eq!(beat.actor, "payment-worker@test/1");
    assert_eq!(beat.role, "payment");
    assert_eq!(beat.policy_id, Policy::default_policy().id().to_string());
    assert_eq!(beat.breakers.len(), 3, "one breaker per downstream client");
    assert_eq!(beat.breakers[&Stage::Payment], BreakerState::Closed);
    assert!(!beat.paused);
    eventually(Duration::from_secs(30), "the worker consumes", || {
        fx.consumers(&queue) == 1
    });

    fx.runtime
        .block_on(
            fx.store
                .pause_stage(Stage::Payment, "provider outage", "operator:test"),
        )
        .unwrap();
    eventually(Duration::from_secs(10), "the pause is seen", || {
        fx.consumers(&queue) == 0
    });
    eventually(Duration::from_secs(10), "the heartbeat says paused", || {
        fx.workers().first().is_some_and(|w| w.heartbeat.paused)
    });
    // A delivery waits in the queue while the stage is paused: no consumer
    // is attached that the broker could hand it to.
    fx.publish(&queue, b"not json");
    assert_eq!(fx.depth(&queue), 1);
    assert_eq!(fx.consumers(&queue), 0);
    assert_eq!(fx.depth(&exceptions), 0);

    fx.runtime
        .block_on(fx.store.resume_stage(Stage::Payment))
        .unwrap();
    eventually(Duration::from_secs(10), "consumed once resumed", || {
        fx.depth(&exceptions) == 1
    });
    assert_eq!(fx.depth(&queue), 0);

    let mut worker = fx.worker.take().expect("running");
    let sent = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = worker.try_wait().expect("the worker's status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = worker.kill();
            panic!("the worker did not drain within 15 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        fx.workers().is_empty(),
        "a drained worker leaves no heartbeat"
    );
}
