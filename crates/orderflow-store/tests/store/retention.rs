//! Retention: a finished order's snapshot for the archive, the removal of
//! every key it has once archived, and what stops a removal.

use crate::common::{Backend, TestNs, create, mv, order_id, policy};
use orderflow_core::OrderState::{self, *};
use orderflow_core::Stage;
use orderflow_store::{Expired, Note, Transition};
use redis::Commands;
use serde_json::json;
use std::time::Duration;

/// The keys of the namespace that belong to `id`. A script keyed by the
/// order's state key runs on the node holding the order's slot — the one
/// node whose keyspace can hold them, on a cluster as on one node.
fn keys_of(t: &TestNs, id: &str) -> Vec<String> {
    const SCAN_HERE: &str = "local found, cursor = {}, '0' \
        repeat \
          local reply = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000) \
          cursor = reply[1] \
          for _, key in ipairs(reply[2]) do found[#found + 1] = key end \
        until cursor == '0' \
        return found";
    let mut keys: Vec<String> = redis::cmd("EVAL")
        .arg(SCAN_HERE)
        .arg(1)
        .arg(format!("{}:order:{{{id}}}:state", t.ns))
        .arg(format!("{}:order:{{{id}}}:*", t.ns))
        .query(&mut t.raw())
        .unwrap();
    keys.sort();
    keys
}

/// A move with an idempotency record, as a stage writes it.
fn step(version: u64, from: OrderState, to: OrderState, stage: Stage, msg: &str) -> Transition {
    Transition {
        idempotency: Some((stage, format!("msg:{msg}"), json!([]))),
        ..mv(version, from, to)
    }
}

/// Creates `name` and takes it to delivered the way the stages do: runs
/// counted, leases and fences taken, a record per step.
async fn delivered(t: &TestNs, name: &str) -> orderflow_core::message::OrderId {
    let id = order_id(name);
    create(&t.store, &id).await;
    let route = [
        (Received, Reserved, Stage::Inventory),
        (Reserved, Paid, Stage::Payment),
        (Paid, ShipmentAccepted, Stage::Shipping),
        (ShipmentAccepted, Delivered, Stage::Shipping),
    ];
    for (n, (from, to, stage)) in route.into_iter().enumerate() {
        t.store.incr_attempt(&id, stage).await.unwrap();
        let lease = t
            .store
            .acquire_lease(&id, stage, "worker-1", Duration::from_secs(30))
            .await
            .unwrap()
            .expect("free lease");
        let mut mv = step(n as u64 + 1, from, to, stage, &format!("{name}-{n}"));
        mv.fencing = Some((stage, lease.fencing));
        mv.release_lease = true;
        t.store.transition(&id, &mv).await.unwrap();
    }
    id
}

both!(an_archived_finished_order_leaves_no_key_behind);
async fn an_archived_finished_order_leaves_no_key_behind(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = delivered(&t, "gone").await;
    let before = keys_of(&t, "gone");
    assert!(
        before.len() >= 8,
        "state, audit, steps, records, runs, fences: {before:?}"
    );

    let snapshot = t
        .store
        .archive_snapshot(&id)
        .await
        .unwrap()
        .expect("finished");
    assert_eq!(snapshot.state, Delivered);
    assert_eq!(snapshot.version, 5);
    assert_eq!(snapshot.audit.len(), 5, "created + four moves");
    assert_eq!(snapshot.order().unwrap().state, Delivered);
    assert_eq!(snapshot.audit_entries().unwrap()[4].to, Delivered);
    assert_eq!(snapshot.runs.get(&Stage::Shipping), Some(&2));
    // The JSON form reads back as it was written.
    let text = serde_json::to_string(&snapshot).unwrap();
    assert_eq!(
        serde_json::from_str::<orderflow_store::ArchivedOrder>(&text).unwrap(),
        snapshot
    );

    let expired = t.store.expire_archived(&snapshot).await.unwrap();
    assert_eq!(
        expired,
        Expired::Removed {
            keys: before.len() as u64
        }
    );
    assert_eq!(keys_of(&t, "gone"), Vec::<String>::new());
    assert_eq!(t.store.get_order(&id).await.unwrap(), None);
    assert!(
        t.store
            .orders_in_state(Delivered, 10)
            .await
            .unwrap()
            .is_empty(),
        "out of the state index too"
    );
    assert_eq!(
        t.store.expire_archived(&snapshot).await.unwrap(),
        Expired::Missing
    );
}

both!(a_change_after_the_snapshot_keeps_the_order);
async fn a_change_after_the_snapshot_keeps_the_order(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = delivered(&t, "late").await;
    let snapshot = t.store.archive_snapshot(&id).await.unwrap().unwrap();
    // A note moves no version, but it is a change the archive lacks.
    t.store
        .note(
            &id,
            &Note {
                event: "test.note".into(),
                reason: None,
                actor: "operator:alice".into(),
                correlation_id: "corr-1".into(),
                policy_id: policy(),
                rule: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        t.store.expire_archived(&snapshot).await.unwrap(),
        Expired::Changed {
            version: 5,
            state: Delivered
        }
    );
    assert!(t.store.get_order(&id).await.unwrap().is_some());
    // Archived again, it goes.
    let again = t.store.archive_snapshot(&id).await.unwrap().unwrap();
    assert_eq!(again.audit.len(), 6);
    assert!(matches!(
        t.store.expire_archived(&again).await.unwrap(),
        Expired::Removed { .. }
    ));
}

both!(orders_not_finished_are_never_archived);
async fn orders_not_finished_are_never_archived(backend: Backend) {
    let t = TestNs::new(backend).await;
    let waiting = order_id("waiting");
    create(&t.store, &waiting).await;
    let escalated = order_id("person");
    create(&t.store, &escalated).await;
    t.store
        .transition(
            &escalated,
            &Transition {
                reason: Some("needs a person".into()),
                ..mv(1, Received, Escalated)
            },
        )
        .await
        .unwrap();
    for id in [&waiting, &escalated] {
        assert_eq!(t.store.archive_snapshot(id).await.unwrap(), None, "{id}");
    }
    let far_future = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    assert!(
        t.store
            .finished_before(far_future, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

both!(finished_orders_are_found_by_their_finish_time);
async fn finished_orders_are_found_by_their_finish_time(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = delivered(&t, "done").await;
    let now = jiff::Timestamp::now();
    let earlier = now - jiff::SignedDuration::from_hours(1);
    assert!(
        t.store
            .finished_before(earlier, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let later = now + jiff::SignedDuration::from_secs(5);
    assert_eq!(t.store.finished_before(later, 10).await.unwrap(), [id]);
}

both!(fleet_streams_are_trimmed_by_age);
async fn fleet_streams_are_trimmed_by_age(backend: Backend) {
    let t = TestNs::new(backend).await;
    delivered(&t, "aged").await;
    let key = t.key("audit");
    let mut conn = t.raw();
    let before: u64 = conn.xlen(&key).unwrap();
    assert_eq!(before, 5);
    // Nothing is an hour old: nothing goes.
    t.store
        .trim_fleet_streams(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(conn.xlen::<_, u64>(&key).unwrap(), 5);
    // Older than nothing: every entry written before now goes.
    std::thread::sleep(Duration::from_millis(5));
    let trimmed = t.store.trim_fleet_streams(Duration::ZERO).await.unwrap();
    assert_eq!(trimmed, 5);
    assert_eq!(conn.xlen::<_, u64>(&key).unwrap(), 0);
}
