//! Crash points and a Redis restart: every order converges, every
//! transition happens once. (A binary of its own: failpoints are global to
//! the process.)

mod support;

use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Stage};
use orderflow_runtime::{crash, noop};
use orderflow_testkit::redis::PrivateRedis;
use std::time::Duration;
use support::{Fleet, redis_url};

const WITHIN: Duration = Duration::from_secs(30);

async fn place_all(fleet: &Fleet, prefix: &str, n: usize) -> Vec<OrderId> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(fleet.place(&format!("{prefix}-{i}")).await);
    }
    ids
}

async fn assert_each_transition_once(fleet: &Fleet, ids: &[OrderId]) {
    for id in ids {
        let audit = fleet.store.order_audit(id).await.unwrap();
        let moves: Vec<_> = audit.iter().map(|e| e.to).collect();
        assert_eq!(moves, noop::ROUTE, "{id}");
        assert!(
            audit[1..]
                .iter()
                .all(|e| e.policy_id == fleet.store_policy_id().as_str())
        );
    }
    for stage in Stage::ALL {
        let exceptions = fleet.spec.names().exception_queue(stage);
        assert_eq!(
            fleet.depth(&exceptions).await,
            0,
            "nothing parked in {exceptions}"
        );
    }
}

#[tokio::test]
async fn a_crash_at_any_point_is_recovered_by_redelivery() {
    for point in crash::ALL {
        let scenario = fail::FailScenario::setup();
        // Crash the first two deliveries that reach the point.
        fail::cfg(point, "2*panic").unwrap();
        let fleet = Fleet::start(&redis_url()).await;
        let ids = place_all(&fleet, point, 6).await;
        fleet.wait_all(&ids, OrderState::Delivered, WITHIN).await;
        assert_each_transition_once(&fleet, &ids).await;
        let reruns: u32 = ids
            .iter()
            .flat_map(|id| {
                noop::ROUTE[1..]
                    .iter()
                    .map(|state| fleet.runs_into(id, *state))
            })
            .map(|n| n - 1)
            .sum();
        if point == crash::AFTER_DOWNSTREAM {
            // The work ran, nothing was recorded: it runs again (with the
            // same idempotency key, so a real downstream repeats nothing).
            assert_eq!(reruns, 2, "{point}");
        } else {
            assert_eq!(reruns, 0, "{point}: the record stopped a second run");
        }
        fleet.stop().await;
        scenario.teardown();
    }
}

/// After a Redis restart the first command on a reconnecting connection
/// fails; the next ones work.
async fn wait_for_store(fleet: &Fleet) {
    for _ in 0..100 {
        if fleet.store.ping().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Redis did not come back");
}

#[tokio::test]
async fn a_redis_crash_mid_run_loses_nothing_and_repeats_nothing() {
    // Holds the failpoint lock: no crash point fires during this test.
    let scenario = fail::FailScenario::setup();
    // A Redis of this test's own (append-only, fsync always), so it can be
    // killed and restarted without disturbing anyone else.
    let dir = std::env::temp_dir().join(format!("orderflow-crash-{}", uuid::Uuid::new_v4()));
    let mut redis = PrivateRedis::start(&dir);
    let fleet = Fleet::start(&redis.url()).await;
    let first = place_all(&fleet, "before", 15).await;
    // Crashed mid-run: once the workers have moved an order.
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let mut moved = false;
        for id in &first {
            moved |= fleet.store.order_audit(id).await.unwrap().len() > 1;
        }
        if moved {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no order moved");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.crash_and_restart();
    wait_for_store(&fleet).await;
    let second = place_all(&fleet, "after", 15).await;
    let ids: Vec<_> = first.into_iter().chain(second).collect();
    fleet.wait_all(&ids, OrderState::Delivered, WITHIN).await;
    assert_each_transition_once(&fleet, &ids).await;
    fleet.stop().await;
    redis.kill();
    let _ = std::fs::remove_dir_all(&dir);
    scenario.teardown();
}
