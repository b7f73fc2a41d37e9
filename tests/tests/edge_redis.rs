//! docs/reliability.md, item 6: a Redis that answers but cannot take the work — out of
//! memory under `maxmemory` with `noeviction` — must not cost a healthy
//! order anything. Each worker holds its deliveries (never requeueing them,
//! which would count towards the broker's delivery limit and dead-letter
//! them within seconds), reports itself unready saying why, and carries on
//! once Redis takes writes again: every order is delivered, nothing parked.
//! The same for a Redis demoted to a read-only replica (`READONLY`).

use orderflow_testkit::edge::redis_cli;
use orderflow_testkit::redis::PrivateRedis;
use orderflow_testkit::{Fleet, FleetOptions, Order, OrderState, Stage, WorkerKind};
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(40);
const ORDERS: usize = 8;

/// Waits until the inventory worker holds `count` deliveries waiting on
/// Redis and its `/readyz` says so naming `code`; panics at once if a
/// message is parked or dead-lettered meanwhile.
async fn wait_held(fleet: &Fleet, count: usize, code: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for stage in Stage::ALL {
            let parked = fleet.exceptions(stage).await;
            assert!(
                parked.is_empty(),
                "parked in {stage} exceptions while Redis refused writes: {:?}",
                parked
                    .iter()
                    .map(|p| (p.order_id(), p.reason().map(str::to_owned)))
                    .collect::<Vec<_>>()
            );
        }
        let held = fleet
            .worker_metric(WorkerKind::Inventory, 0, "orderflow_waiting_on_redis")
            .await;
        let ready = fleet
            .worker_http(WorkerKind::Inventory, 0, "/readyz")
            .await
            .unwrap_or_default();
        if held >= count as f64 && ready.contains("\"ready\":false") && ready.contains(code) {
            return ready;
        }
        assert!(
            Instant::now() < deadline,
            "the inventory worker holds {held} of {count} deliveries on Redis; /readyz: {ready}\n{}",
            fleet.log_tails(15)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_out_of_memory_holds_deliveries_until_it_takes_writes_again() {
    let fleet = Fleet::start(FleetOptions::new().private_redis()).await;
    let warm = fleet.place(&Order::new("ord-oom-warm")).await;
    fleet
        .wait_state(&warm, &[OrderState::Delivered], SETTLE)
        .await;

    fleet.private_redis_cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    fleet.private_redis_cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let orders: Vec<Order> = (0..ORDERS)
        .map(|i| Order::new(&format!("ord-oom-{i}")))
        .collect();
    let ids = fleet.place_all(&orders).await;
    let ready = wait_held(&fleet, ORDERS, "OOM").await;
    println!("while Redis is out of memory, the inventory worker's /readyz: {ready}");

    fleet.private_redis_cli(&["CONFIG", "SET", "maxmemory", "0"]);
    let records = fleet.settle_and_check(SETTLE).await;
    for id in &ids {
        let record = records
            .iter()
            .find(|r| r.order_id.as_str() == id)
            .expect("placed order settled");
        assert_eq!(record.state, OrderState::Delivered, "{id}: {record:?}");
    }
    for stage in Stage::ALL {
        assert!(fleet.exceptions(stage).await.is_empty(), "{stage}");
    }
    assert!(
        fleet
            .worker_metric(WorkerKind::Inventory, 0, "orderflow_redis_waits_total")
            .await
            >= ORDERS as f64
    );
}

/// Waits until the Redis on `port` reports `field:value` in `INFO replication`.
fn wait_replication(port: u16, field: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = redis_cli(port, &["INFO", "replication"]);
        if info.lines().any(|line| line.trim() == field) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no `{field}` on port {port} within 20s:\n{info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_demoted_to_a_read_only_replica_holds_deliveries_until_promoted_again() {
    let fleet = Fleet::start(FleetOptions::new().private_redis()).await;
    let warm = fleet.place(&Order::new("ord-ro-warm")).await;
    fleet
        .wait_state(&warm, &[OrderState::Delivered], SETTLE)
        .await;

    // Demote the fleet's Redis without losing its data: a throwaway Redis
    // copies it as a replica, is promoted, and the fleet's Redis becomes
    // its read-only replica.
    let ours = fleet.private_redis_port();
    let other = PrivateRedis::start(&fleet.dir().join("other-redis"));
    let ours_text = ours.to_string();
    let other_text = other.port().to_string();
    redis_cli(other.port(), &["REPLICAOF", "127.0.0.1", &ours_text]);
    wait_replication(other.port(), "master_link_status:up");
    redis_cli(other.port(), &["REPLICAOF", "NO", "ONE"]);
    redis_cli(ours, &["REPLICAOF", "127.0.0.1", &other_text]);
    wait_replication(ours, "master_link_status:up");

    let orders: Vec<Order> = (0..ORDERS)
        .map(|i| Order::new(&format!("ord-ro-{i}")))
        .collect();
    let ids = fleet.place_all(&orders).await;
    let ready = wait_held(&fleet, ORDERS, "ReadOnly").await;
    println!("while Redis is a read-only replica, the inventory worker's /readyz: {ready}");

    redis_cli(ours, &["REPLICAOF", "NO", "ONE"]);
    let records = fleet.settle_and_check(SETTLE).await;
    for id in &ids {
        let record = records
            .iter()
            .find(|r| r.order_id.as_str() == id)
            .expect("placed order settled");
        assert_eq!(record.state, OrderState::Delivered, "{id}: {record:?}");
    }
    for stage in Stage::ALL {
        assert!(fleet.exceptions(stage).await.is_empty(), "{stage}");
    }
    drop(other);
}
