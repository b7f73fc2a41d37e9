use crate::common::{Backend, TestNs, create, mv, order_id};
use orderflow_core::OrderState::*;
use orderflow_core::Stage;
use orderflow_store::{Begun, Error, ErrorClass, Lease, Transition};
use redis::Commands;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(10);

both!(of_many_contenders_exactly_one_gets_the_lease, multi_thread);
async fn of_many_contenders_exactly_one_gets_the_lease(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("contended");
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = t.connect().await;
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .acquire_lease(&id, Stage::Payment, &format!("worker-{n}"), TTL)
                .await
                .unwrap()
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(task.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(winners[0].fencing, 1);
    // Other stages of the same order have their own leases.
    assert!(
        t.store
            .acquire_lease(&id, Stage::Shipping, "worker-x", TTL)
            .await
            .unwrap()
            .is_some()
    );
}

both!(a_stale_fencing_number_is_refused);
async fn a_stale_fencing_number_is_refused(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("fenced");
    create(&t.store, &id).await;
    let old = t
        .store
        .acquire_lease(&id, Stage::Inventory, "old", TTL)
        .await
        .unwrap()
        .unwrap();
    assert!(t.store.release(&old).await.unwrap());
    let new = t
        .store
        .acquire_lease(&id, Stage::Inventory, "new", TTL)
        .await
        .unwrap()
        .unwrap();
    assert!(new.fencing > old.fencing);

    let fenced = |fencing| Transition {
        fencing: Some((Stage::Inventory, fencing)),
        idempotency: Some((Stage::Inventory, "reserve".into(), serde_json::json!("ok"))),
        ..mv(1, Received, Reserved)
    };
    let err = t
        .store
        .transition(&id, &fenced(old.fencing))
        .await
        .unwrap_err();
    match &err {
        Error::StaleFence {
            stage,
            fencing,
            current,
            ..
        } => assert_eq!(
            (*stage, *fencing, *current),
            (Stage::Inventory, old.fencing, new.fencing)
        ),
        other => panic!("expected StaleFence, got {other:?}"),
    }
    assert_eq!(err.class(), ErrorClass::Conflict);
    // Nothing of the refused move landed.
    assert_eq!(t.store.get_order(&id).await.unwrap().unwrap().version, 1);
    assert_eq!(
        t.store
            .get_step_result(&id, Stage::Inventory, "reserve")
            .await
            .unwrap(),
        None
    );

    assert!(matches!(
        t.store
            .check_fence(&id, Stage::Inventory, old.fencing)
            .await,
        Err(Error::StaleFence { .. })
    ));
    t.store
        .check_fence(&id, Stage::Inventory, new.fencing)
        .await
        .unwrap();
    assert_eq!(
        t.store.transition(&id, &fenced(new.fencing)).await.unwrap(),
        2
    );
}

both!(only_the_holder_renews_or_releases);
async fn only_the_holder_renews_or_releases(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("owned");
    let held = t
        .store
        .acquire_lease(&id, Stage::Shipping, "owner", TTL)
        .await
        .unwrap()
        .unwrap();
    let forged = Lease {
        token: "intruder".into(),
        ..held.clone()
    };
    assert!(!t.store.renew(&forged, TTL).await.unwrap());
    assert!(!t.store.release(&forged).await.unwrap());
    assert!(
        t.store
            .acquire_lease(&id, Stage::Shipping, "intruder", TTL)
            .await
            .unwrap()
            .is_none(),
        "the lease is still held"
    );

    // The holder asking again keeps its fencing number.
    let again = t
        .store
        .acquire_lease(&id, Stage::Shipping, "owner", TTL)
        .await
        .unwrap();
    assert_eq!(again, Some(held.clone()));
    assert!(t.store.renew(&held, TTL).await.unwrap());
    assert!(t.store.release(&held).await.unwrap());
    assert!(!t.store.release(&held).await.unwrap(), "released once only");
    assert!(
        t.store
            .acquire_lease(&id, Stage::Shipping, "intruder", TTL)
            .await
            .unwrap()
            .is_some()
    );
}

both!(an_expired_lease_lets_the_next_worker_in_with_a_higher_number);
async fn an_expired_lease_lets_the_next_worker_in_with_a_higher_number(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("expiring");
    let short = Duration::from_millis(200);
    let first = t
        .store
        .acquire_lease(&id, Stage::Payment, "first", short)
        .await
        .unwrap()
        .unwrap();
    assert!(
        t.store
            .acquire_lease(&id, Stage::Payment, "second", short)
            .await
            .unwrap()
            .is_none()
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = t
        .store
        .acquire_lease(&id, Stage::Payment, "second", TTL)
        .await
        .unwrap()
        .unwrap();
    assert!(second.fencing > first.fencing);
    assert!(
        !t.store.renew(&first, TTL).await.unwrap(),
        "the first holder lost it"
    );
    assert!(
        t.store
            .check_fence(&id, Stage::Payment, first.fencing)
            .await
            .is_err()
    );
}

both!(the_keeper_holds_the_lease_and_reports_its_loss);
async fn the_keeper_holds_the_lease_and_reports_its_loss(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("kept");
    let ttl = Duration::from_millis(300);
    let lease = t
        .store
        .acquire_lease(&id, Stage::Payment, "keeper", ttl)
        .await
        .unwrap()
        .unwrap();
    let mut keeper = t.store.keep_alive(&lease, ttl);

    // Well past the ttl, the lease is still held thanks to the renewals.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!keeper.is_lost());
    assert!(
        t.store
            .acquire_lease(&id, Stage::Payment, "other", ttl)
            .await
            .unwrap()
            .is_none()
    );

    // Someone deletes it (an operator, a Redis failover): the keeper notices.
    let _: () = t.raw().del(t.key("order:{kept}:lease:payment")).unwrap();
    let other = t
        .store
        .acquire_lease(&id, Stage::Payment, "other", TTL)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), keeper.lost())
        .await
        .expect("the keeper reports the loss within a few renewal periods");
    assert!(keeper.is_lost());
    assert!(!keeper.stop());
    assert!(other.fencing > lease.fencing);

    // A keeper stopped while holding says so.
    let kept = t.store.keep_alive(&other, TTL);
    assert!(kept.stop());
}

both!(a_delivery_begins_with_lease_record_or_run_count_and_order_in_one_call);
async fn a_delivery_begins_with_lease_record_or_run_count_and_order_in_one_call(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("o-begin");
    let ttl = Duration::from_secs(10);
    let store = &t.store;

    // No order yet: the lease is taken, the run counted, no record.
    let Begun::Ready { lease, runs, order } = store
        .begin_step(&id, Stage::Payment, "w1", ttl, "msg:1")
        .await
        .unwrap()
    else {
        panic!("ready expected");
    };
    assert_eq!((runs, order.is_none()), (1, true));
    assert!(matches!(
        store
            .begin_step(&id, Stage::Payment, "w2", ttl, "msg:1")
            .await
            .unwrap(),
        Begun::Busy
    ));
    store.release(&lease).await.unwrap();

    create(store, &id).await;
    let Begun::Ready { lease, runs, order } = store
        .begin_step(&id, Stage::Payment, "w2", ttl, "msg:1")
        .await
        .unwrap()
    else {
        panic!("ready expected");
    };
    assert_eq!(runs, 2, "runs are counted across deliveries");
    assert_eq!(order.unwrap().state, Received);
    let mut moved = mv(1, Received, Reserved);
    moved.idempotency = Some((Stage::Payment, "msg:1".into(), serde_json::json!(["sent"])));
    moved.fencing = Some((Stage::Payment, lease.fencing));
    moved.release_lease = true;
    store.transition(&id, &moved).await.unwrap();
    assert!(
        !store.release(&lease).await.unwrap(),
        "the move dropped the lease already"
    );

    let Begun::Recorded { record, .. } = store
        .begin_step(&id, Stage::Payment, "w3", ttl, "msg:1")
        .await
        .unwrap()
    else {
        panic!("recorded expected");
    };
    assert_eq!(record, serde_json::json!(["sent"]));
    assert_eq!(
        store.attempts(&id, Stage::Payment).await.unwrap(),
        2,
        "a recorded message is not a run"
    );
}
