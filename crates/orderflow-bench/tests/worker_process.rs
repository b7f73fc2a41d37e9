//! The worker as a process: `kill -9` at every crash point and at a random
//! moment mid-run, and a SIGTERM that drains it. After a restart every order
//! is delivered, every transition happened once, nothing is parked.

use orderflow_bench::runtime_pipeline::{Target, create_orders, publish_steps, store};
use orderflow_broker::TopologySpec;
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Policy, Stage};
use orderflow_runtime::{crash, noop};
use orderflow_store::Store;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const AMQP_URL: &str = orderflow_settings::DEFAULT_AMQP_URL;

fn target() -> Target {
    Target {
        amqp_url: AMQP_URL.into(),
        redis_url: std::env::var("ORDERFLOW_TEST_REDIS_URL")
            .unwrap_or_else(|_| orderflow_settings::DEFAULT_REDIS_URL.into()),
        namespace: format!("t-{}", uuid::Uuid::new_v4().simple()),
    }
}

/// The benchmark's worker process (all three stages), optionally set to
/// abort at a crash point.
fn worker(target: &Target, failpoint: Option<&str>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runtime-bench"));
    command
        .args([
            "worker",
            "--amqp-url",
            &target.amqp_url,
            "--redis-url",
            &target.redis_url,
        ])
        .args(["runtime", "--events", "--namespace", &target.namespace])
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    match failpoint {
        // `return` runs the crash point's action: abort, as kill -9 would.
        Some(point) => command.env("FAILPOINTS", format!("{point}=return")),
        None => command.env_remove("FAILPOINTS"),
    };
    command
        .spawn()
        .expect("runtime-bench builds with the tests")
}

struct Run {
    target: Target,
    policy: Policy,
    spec: TopologySpec,
    conn: orderflow_broker::Connection,
}

impl Run {
    async fn start() -> Run {
        let target = target();
        let policy = Policy::default_policy();
        let spec = TopologySpec::from_policy(&target.namespace, &policy).unwrap();
        let conn = orderflow_broker::connect(AMQP_URL)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach RabbitMQ at {AMQP_URL}: {e}; start it: rabbitmq-server -detached"
                )
            });
        orderflow_broker::declare(&conn, &spec).await.unwrap();
        Run {
            target,
            policy,
            spec,
            conn,
        }
    }

    async fn place(&self, prefix: &str, orders: usize) -> Vec<orderflow_core::message::OrderId> {
        let store = store(&self.target)
            .await
            .expect("Redis reachable (redis-server --daemonize yes)");
        let ids = create_orders(&store, &self.policy, prefix, orders)
            .await
            .unwrap();
        publish_steps(&self.target, &self.spec, &ids).await.unwrap();
        ids
    }

    /// Orders that left `received`.
    async fn moved(&self, store: &Store, ids: &[OrderId]) -> usize {
        self.count_states(store, ids, |s| s != OrderState::Received)
            .await
    }

    /// Orders already delivered.
    async fn delivered(&self, store: &Store, ids: &[OrderId]) -> usize {
        self.count_states(store, ids, |s| s == OrderState::Delivered)
            .await
    }

    async fn count_states(
        &self,
        store: &Store,
        ids: &[OrderId],
        counted: impl Fn(OrderState) -> bool,
    ) -> usize {
        let mut n = 0;
        for id in ids {
            if let Some(order) = store.get_order(id).await.unwrap()
                && counted(order.state)
            {
                n += 1;
            }
        }
        n
    }

    async fn check_converged(&self, ids: &[OrderId]) {
        let store = store(&self.target).await.unwrap();
        // Ask each order, not the state index: a kill between a move and its
        // index update leaves the index a step behind (it is repaired on read).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        for id in ids {
            loop {
                let state = store.get_order(id).await.unwrap().map(|o| o.state);
                if state == Some(OrderState::Delivered) {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{id} stuck in {state:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for id in ids {
            let moves: Vec<_> = store
                .order_audit(id)
                .await
                .unwrap()
                .iter()
                .map(|e| e.to)
                .collect();
            assert_eq!(moves, noop::ROUTE, "{id}: every transition once");
        }
        for stage in Stage::ALL {
            let queue = self.spec.names().exception_queue(stage);
            assert_eq!(
                orderflow_broker::admin::queue_depth(&self.conn, &queue)
                    .await
                    .unwrap(),
                0,
                "{queue}"
            );
        }
    }

    async fn stop(self) {
        let _ = orderflow_broker::topology::delete(&self.conn, &self.spec).await;
        if let Ok(store) = store(&self.target).await {
            let _ = store.purge_namespace().await;
        }
    }
}

fn reap(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_worker_killed_at_any_crash_point_loses_nothing_and_repeats_nothing() {
    for point in crash::ALL {
        let run = Run::start().await;
        let mut crashing = worker(&run.target, Some(point));
        let ids = run.place(point, 20).await;
        // It aborts the first time it reaches the point.
        let crashed = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || crashing.wait()),
        )
        .await
        .unwrap_or_else(|_| panic!("{point}: the worker never reached the crash point"));
        let status = crashed.unwrap().unwrap();
        assert!(!status.success(), "{point}: the worker crashed ({status})");

        let healthy = worker(&run.target, None);
        run.check_converged(&ids).await;
        reap(healthy);
        run.stop().await;
    }
}

#[tokio::test]
async fn a_worker_killed_mid_run_loses_nothing_and_repeats_nothing() {
    let run = Run::start().await;
    let first = worker(&run.target, None);
    let ids = run.place("mid", 300).await;
    // Killed once it has moved orders, and before it has finished them.
    let store = store(&run.target).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while run.moved(&store, &ids).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker moved no order"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reap(first); // SIGKILL: no shutdown, unacked deliveries return to the queues.
    let delivered = run.delivered(&store, &ids).await;
    assert!(
        delivered < ids.len(),
        "the kill came after the last order was delivered: nothing was in flight"
    );
    let second = worker(&run.target, None);
    run.check_converged(&ids).await;
    reap(second);
    run.stop().await;
}

#[tokio::test]
async fn a_sigterm_drains_the_worker_and_loses_nothing() {
    let run = Run::start().await;
    let mut first = worker(&run.target, None);
    let ids = run.place("term", 100).await;
    let sent = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .expect("kill is installed");
    assert!(sent.success());
    let exited = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || first.wait()),
    )
    .await
    .expect("the worker exits within its grace period")
    .unwrap()
    .unwrap();
    assert!(
        exited.success(),
        "a drained worker exits cleanly ({exited})"
    );

    let second = worker(&run.target, None);
    run.check_converged(&ids).await;
    reap(second);
    run.stop().await;
}
