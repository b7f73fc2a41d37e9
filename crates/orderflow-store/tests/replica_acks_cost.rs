//! What `[store] replica_acks` costs: the same order writes timed on the
//! Redis Cluster of `scripts/clusters.sh up` without and with a `WAIT` for
//! one replica after each. A measurement, not a check, so it runs only when
//! asked:
//!
//! ```sh
//! cargo test -p orderflow-store --test replica_acks_cost -- --ignored --nocapture
//! ```

use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Policy};
use orderflow_store::{Store, StoreOptions, Transition};
use serde_json::json;
use std::time::{Duration, Instant};

const ORDERS: usize = 300;

fn cluster_url() -> String {
    std::env::var("ORDERFLOW_TEST_REDIS_CLUSTER_URL")
        .unwrap_or_else(|_| "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".into())
}

fn mv(version: u64, from: OrderState, to: OrderState) -> Transition {
    Transition {
        expected_version: version,
        from,
        to,
        reason: None,
        event: format!("bench.{to}"),
        actor: "bench".into(),
        correlation_id: "bench".into(),
        policy_id: Policy::default_policy().id(),
        rule: None,
        fields_to_set: Vec::new(),
        idempotency: None,
        fencing: None,
        release_lease: false,
    }
}

/// Each order's creation and two moves, one write at a time; the time of
/// every write.
async fn writes(replica_acks: u32) -> Vec<Duration> {
    let ns = format!("bench-{}", uuid::Uuid::new_v4());
    let store = Store::connect_with(
        &cluster_url(),
        StoreOptions {
            namespace: ns,
            replica_acks,
            replica_ack_timeout: Duration::from_millis(100),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the cluster at {}: {e}; run scripts/clusters.sh up",
            cluster_url()
        )
    });
    let policy = Policy::default_policy().id();
    let mut times = Vec::with_capacity(ORDERS * 3);
    for n in 0..ORDERS {
        let id = OrderId::parse(&format!("o-{n}")).unwrap();
        let started = Instant::now();
        store
            .create_order(&id, &json!({ "n": n }), "bench", &policy, "bench")
            .await
            .unwrap();
        times.push(started.elapsed());
        for (version, from, to) in [
            (1, OrderState::Received, OrderState::Reserved),
            (2, OrderState::Reserved, OrderState::Paid),
        ] {
            let started = Instant::now();
            store.transition(&id, &mv(version, from, to)).await.unwrap();
            times.push(started.elapsed());
        }
    }
    store.purge_namespace().await.unwrap();
    times
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(times[((times.len() - 1) as f64 * q) as usize]);
    let mean = ms(times.iter().sum::<Duration>()) / times.len() as f64;
    format!(
        "{} writes: mean {mean:.2} ms, p50 {:.2} ms, p99 {:.2} ms",
        times.len(),
        at(0.5),
        at(0.99)
    )
}

#[tokio::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn the_cost_of_waiting_for_a_replica() {
    // Alternated, so both meet the same load of the (shared, busy) machine.
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        without.extend(writes(0).await);
        with.extend(writes(1).await);
    }
    println!("replica_acks = 0: {}", summary(without));
    println!("replica_acks = 1: {}", summary(with));
}
