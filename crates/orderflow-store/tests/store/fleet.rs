use crate::common::{Backend, TestNs, create, order_id, policy};
use orderflow_core::Stage;
use orderflow_core::decide::BreakerState;
use orderflow_store::{FleetNote, Heartbeat, PauseOutcome};
use std::collections::BTreeMap;
use std::time::Duration;

fn heartbeat(actor: &str) -> Heartbeat {
    Heartbeat {
        actor: actor.to_owned(),
        role: "payment".into(),
        policy_id: policy().to_string(),
        started_at: jiff::Timestamp::from_millisecond(1_700_000_000_000).unwrap(),
        breakers: BTreeMap::from([
            (Stage::Payment, BreakerState::Open),
            (Stage::Inventory, BreakerState::Closed),
        ]),
        paused: true,
    }
}

both!(heartbeats_are_read_back_and_expire_by_themselves);
async fn heartbeats_are_read_back_and_expire_by_themselves(backend: Backend) {
    let t = TestNs::new(backend).await;
    let beat = heartbeat("payment-worker@h/1");
    t.store
        .write_heartbeat(&beat, Duration::from_secs(30))
        .await
        .unwrap();
    t.store
        .write_heartbeat(&heartbeat("payment-worker@h/2"), Duration::from_millis(200))
        .await
        .unwrap();
    let live = t.store.live_workers().await.unwrap();
    assert_eq!(live.len(), 2);
    assert_eq!(live[0].heartbeat, beat);
    let age = jiff::Timestamp::now().duration_since(live[0].seen_at);
    assert!(age.as_secs() < 5, "seen {age:?} ago");

    tokio::time::sleep(Duration::from_millis(400)).await;
    let live = t.store.live_workers().await.unwrap();
    assert_eq!(live.len(), 1, "the short-lived heartbeat expired");

    // A second write replaces the first, fields and all.
    let mut calmer = beat.clone();
    calmer.breakers = BTreeMap::from([(Stage::Payment, BreakerState::HalfOpen)]);
    calmer.paused = false;
    t.store
        .write_heartbeat(&calmer, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(t.store.live_workers().await.unwrap()[0].heartbeat, calmer);

    t.store.remove_heartbeat(&beat.actor).await.unwrap();
    assert!(t.store.live_workers().await.unwrap().is_empty());
}

both!(a_pause_holds_until_resumed_and_keeps_its_first_reason);
async fn a_pause_holds_until_resumed_and_keeps_its_first_reason(backend: Backend) {
    let t = TestNs::new(backend).await;
    assert_eq!(t.store.stage_pause(Stage::Payment).await.unwrap(), None);
    let PauseOutcome::Paused(first) = t
        .store
        .pause_stage(Stage::Payment, "provider outage", "operator:alice")
        .await
        .unwrap()
    else {
        panic!("not paused before");
    };
    assert_eq!(first.reason, "provider outage");
    assert_eq!(first.actor, "operator:alice");

    let again = t
        .store
        .pause_stage(Stage::Payment, "another reason", "operator:bob")
        .await
        .unwrap();
    assert_eq!(again, PauseOutcome::AlreadyPaused(first.clone()));
    assert_eq!(
        t.store.stage_pause(Stage::Payment).await.unwrap(),
        Some(first.clone())
    );
    let paused = t.store.paused_stages().await.unwrap();
    assert_eq!(paused.keys().copied().collect::<Vec<_>>(), [Stage::Payment]);

    assert_eq!(
        t.store.resume_stage(Stage::Payment).await.unwrap(),
        Some(first)
    );
    assert_eq!(t.store.resume_stage(Stage::Payment).await.unwrap(), None);
    assert!(t.store.paused_stages().await.unwrap().is_empty());
}

both!(fleet_notes_are_read_in_order_from_a_cursor);
async fn fleet_notes_are_read_in_order_from_a_cursor(backend: Backend) {
    let t = TestNs::new(backend).await;
    for event in ["stage.paused", "stage.resumed", "stage.paused"] {
        t.store
            .fleet_note(&FleetNote {
                event: event.into(),
                subject: "stage:payment".into(),
                reason: Some("outage".into()),
                actor: "operator:alice".into(),
                correlation_id: "act-1".into(),
                policy_id: policy(),
            })
            .await
            .unwrap();
    }
    let all = t.store.fleet_notes(None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["stage.paused", "stage.resumed", "stage.paused"]
    );
    assert_eq!(all[0].reason.as_deref(), Some("outage"));
    assert_eq!(all[0].policy_id, policy().to_string());
    let rest = t.store.fleet_notes(Some(&all[0].id), 10).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert!(t.store.fleet_notes(Some("nope"), 1).await.is_err());
}

both!(namespaces_with_orders_or_workers_are_known);
async fn namespaces_with_orders_or_workers_are_known(backend: Backend) {
    let t = TestNs::new(backend).await;
    let other = TestNs::new(backend).await;
    create(&t.store, &order_id("o-1")).await;
    other
        .store
        .write_heartbeat(&heartbeat("w@h/1"), Duration::from_secs(30))
        .await
        .unwrap();
    let known = t.store.known_namespaces().await.unwrap();
    assert!(known.contains(&t.ns), "{known:?}");
    assert!(known.contains(&other.ns), "{known:?}");
}
