//! I9 and friends under a mixed load with simulator faults: workers killed
//! with -9 and restarted, a worker drained by SIGTERM, the namespace's
//! broker connections dropped, the (private, append-only) Redis crashed and
//! restarted. At the end every order has settled and I1–I9 hold.

use orderflow_testkit::orders::mixed;
use orderflow_testkit::{Endpoint, Fleet, FleetOptions, WorkerKind, tally};
use std::time::Duration;

/// A fault run settles slower: leases of killed workers lapse first.
const SETTLE: Duration = Duration::from_secs(60);

/// Producer mistakes mixed into a run (I7: each parked once, no worker
/// stopped).
fn malformed(prefix: &str) -> Vec<Vec<u8>> {
    vec![
        format!("{prefix}: not json").into_bytes(),
        format!(r#"{{"schema":"order.placed/v1","order_id":"{prefix}-bad"}}"#).into_bytes(),
        format!(r#"{{"schema":"order.cancel/v1","order_id":"{prefix}-bad","reason":""}}"#)
            .into_bytes(),
    ]
}

/// Waits until the inventory API has had `calls` reserve calls: the fleet is
/// working through the orders placed so far.
async fn under_way(fleet: &Fleet, calls: u64) {
    fleet
        .wait_ledger("reservations under way", SETTLE, |l| {
            l.calls_to(Endpoint::InventoryReserve) >= calls
        })
        .await;
}

fn replicated(options: FleetOptions) -> FleetOptions {
    options
        .profile_fixture("mixed-faults")
        .replicas(WorkerKind::Inventory, 2)
        .replicas(WorkerKind::Payment, 2)
        .replicas(WorkerKind::Shipping, 2)
        .replicas(WorkerKind::Reconciler, 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_mid_run_lose_and_repeat_nothing() {
    let fleet = Fleet::start(replicated(FleetOptions::new())).await;
    let orders = mixed("ord-kill", 200);
    let publishing = async {
        for chunk in orders.chunks(25) {
            fleet.place_all(chunk).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let killing = async {
        let mut killed = Vec::new();
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            killed.push(fleet.kill_and_restart_random_worker());
        }
        killed
    };
    let ((), killed) = tokio::join!(publishing, killing);
    eprintln!("killed and restarted: {killed:?}");

    let records = fleet.settle_and_check(SETTLE).await;
    eprintln!("settled: {}", tally(&records));
    fleet.assert_good_orders_not_refused(&orders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_drains_a_worker_without_losing_its_orders() {
    let fleet = Fleet::start(replicated(FleetOptions::new())).await;
    let orders = mixed("ord-term", 80);
    fleet.place_all(&orders).await;
    for input in malformed("term") {
        fleet.publish_malformed(&input).await;
    }
    // Terminated with charges under way (each payment delivery makes one).
    fleet
        .wait_ledger("payment charges", SETTLE, |l| {
            l.calls_to(Endpoint::PaymentCharge) >= 5
        })
        .await;
    // In-flight deliveries get the whole shutdown grace, then the worker
    // closes its connections: the bound is more than the grace.
    let status = fleet
        .terminate_worker(WorkerKind::Payment, 0, fleet.drain_bound())
        .expect("a SIGTERM'd worker exits within its drain bound");
    assert!(status.success(), "a drained worker exits 0: {status}");
    let status = fleet
        .terminate_worker(WorkerKind::Shipping, 1, fleet.drain_bound())
        .expect("a SIGTERM'd worker exits within its drain bound");
    assert!(status.success(), "a drained worker exits 0: {status}");
    fleet.start_worker(WorkerKind::Payment, 0);
    fleet.start_worker(WorkerKind::Shipping, 1);

    let records = fleet.settle_and_check(SETTLE).await;
    eprintln!("settled: {}", tally(&records));
    fleet.assert_good_orders_not_refused(&orders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_broker_connections_lose_nothing() {
    let fleet = Fleet::start(replicated(FleetOptions::new())).await;
    let orders = mixed("ord-conn", 150);
    let (first, second) = orders.split_at(75);
    fleet.place_all(first).await;
    under_way(&fleet, 10).await;
    let closed = fleet.close_broker_connections().await;
    assert!(
        closed >= 6,
        "the six stage workers' connections at least: {closed}"
    );
    fleet.place_all(second).await;
    under_way(&fleet, 85).await;
    fleet.close_broker_connections().await;

    let records = fleet.settle_and_check(SETTLE).await;
    eprintln!("settled: {}", tally(&records));
    fleet.assert_good_orders_not_refused(&orders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_crash_and_restart_loses_nothing() {
    let fleet = Fleet::start(replicated(FleetOptions::new()).private_redis()).await;
    let orders = mixed("ord-redis", 150);
    let (first, second) = orders.split_at(75);
    fleet.place_all(first).await;
    under_way(&fleet, 10).await;
    fleet.restart_redis().await;
    for input in malformed("redis") {
        fleet.publish_malformed(&input).await;
    }
    fleet.place_all(second).await;
    under_way(&fleet, 85).await;
    fleet.restart_redis().await;

    let records = fleet.settle_and_check(SETTLE).await;
    eprintln!("settled: {}", tally(&records));
    fleet.assert_good_orders_not_refused(&orders).await;
}
