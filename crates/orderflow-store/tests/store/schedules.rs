use crate::common::{Backend, TestNs, order_id};
use orderflow_core::message::OrderId;
use orderflow_store::ScheduleKind;
use std::collections::HashSet;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

both!(
    two_concurrent_claimers_never_take_the_same_order,
    multi_thread
);
async fn two_concurrent_claimers_never_take_the_same_order(backend: Backend) {
    let t = TestNs::new(backend).await;
    let kind = ScheduleKind::PendingPayment;
    let now = t.store.server_time_ms().await.unwrap();
    let due: Vec<OrderId> = (0..40).map(|n| order_id(&format!("due-{n}"))).collect();
    for (n, id) in due.iter().enumerate() {
        t.store
            .schedule(kind, id, now - 1000 + n as u64)
            .await
            .unwrap();
    }
    let later = order_id("later");
    t.store.schedule(kind, &later, now + 60_000).await.unwrap();

    let peek = t.store.due(kind, now, 100).await.unwrap();
    assert_eq!(
        peek, due,
        "due lists earliest first and leaves out the future"
    );
    assert_eq!(t.store.due(kind, now, 5).await.unwrap().len(), 5);

    let claimer = |store: orderflow_store::Store| async move {
        let mut taken = Vec::new();
        loop {
            let batch = store.claim_due(kind, 3, LONG).await.unwrap();
            if batch.is_empty() {
                return taken;
            }
            taken.extend(batch);
            tokio::task::yield_now().await;
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(claimer(t.connect().await)),
        tokio::spawn(claimer(t.connect().await))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut seen = HashSet::new();
    for claim in a.iter().chain(&b) {
        assert!(
            seen.insert(claim.order_id.clone()),
            "{} claimed twice",
            claim.order_id
        );
        assert!(claim.due_at_ms <= now && claim.claimed_until_ms > now);
    }
    assert_eq!(seen, due.iter().cloned().collect::<HashSet<_>>());
    assert!(
        t.store.due(kind, now, 100).await.unwrap().is_empty(),
        "all claimed"
    );

    for claim in a.iter().chain(&b) {
        assert!(t.store.finish_claim(claim).await.unwrap());
        assert_eq!(
            t.store.scheduled_at(kind, &claim.order_id).await.unwrap(),
            None
        );
    }
    assert_eq!(
        t.store.scheduled_at(kind, &later).await.unwrap(),
        Some(now + 60_000)
    );
}

both!(an_unfinished_claim_comes_due_again_after_its_window);
async fn an_unfinished_claim_comes_due_again_after_its_window(backend: Backend) {
    let t = TestNs::new(backend).await;
    let kind = ScheduleKind::Stuck;
    let id = order_id("abandoned");
    t.store
        .schedule_in(kind, &id, Duration::ZERO)
        .await
        .unwrap();

    let window = Duration::from_millis(300);
    let first = t.store.claim_due(kind, 10, window).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        t.store
            .claim_due(kind, 10, window)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = t.store.claim_due(kind, 10, window).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].order_id, id);
    assert!(second[0].claimed_until_ms > first[0].claimed_until_ms);
    // The stale claim no longer removes it; the current one does.
    assert!(!t.store.finish_claim(&first[0]).await.unwrap());
    assert!(t.store.finish_claim(&second[0]).await.unwrap());
}

both!(a_rescheduled_claim_is_not_removed_by_finishing_it);
async fn a_rescheduled_claim_is_not_removed_by_finishing_it(backend: Backend) {
    let t = TestNs::new(backend).await;
    let kind = ScheduleKind::ShipmentTracking;
    let id = order_id("tracked");
    let before = t.store.server_time_ms().await.unwrap();
    let due_at = t
        .store
        .schedule_in(kind, &id, Duration::ZERO)
        .await
        .unwrap();
    assert!(due_at >= before);

    let claim = t.store.claim_due(kind, 10, LONG).await.unwrap().remove(0);
    let next = t
        .store
        .schedule_in(kind, &id, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!t.store.finish_claim(&claim).await.unwrap());
    assert_eq!(t.store.scheduled_at(kind, &id).await.unwrap(), Some(next));

    assert!(t.store.unschedule(kind, &id).await.unwrap());
    assert!(!t.store.unschedule(kind, &id).await.unwrap());
    // Kinds are separate schedules.
    t.store.schedule(kind, &id, 1).await.unwrap();
    assert!(
        t.store
            .due(ScheduleKind::Stuck, u64::MAX / 2, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

both!(scheduling_if_absent_keeps_an_existing_due_time);
async fn scheduling_if_absent_keeps_an_existing_due_time(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("nx-1");
    let other = order_id("nx-2");
    assert_eq!(
        t.store
            .schedule_if_absent(ScheduleKind::Stuck, &[&id], 1_000)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        t.store
            .schedule_if_absent(ScheduleKind::Stuck, &[&id, &other], 5_000)
            .await
            .unwrap(),
        1,
        "only the order not scheduled yet is added"
    );
    assert_eq!(
        t.store
            .scheduled_at(ScheduleKind::Stuck, &other)
            .await
            .unwrap(),
        Some(5_000)
    );
    assert_eq!(
        t.store
            .scheduled_at(ScheduleKind::Stuck, &id)
            .await
            .unwrap(),
        Some(1_000)
    );
}
