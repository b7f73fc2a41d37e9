use crate::common::{Backend, TestNs, create, mv, order_id, policy};
use orderflow_core::OrderState::{self, *};
use orderflow_store::order::CREATED_EVENT;
use orderflow_store::{Error, Note, Store, StoreOptions, Transition};
use redis::Commands;
use std::collections::HashMap;

both!(every_transition_leaves_one_complete_audit_entry);
async fn every_transition_leaves_one_complete_audit_entry(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("audited");
    let before = jiff::Timestamp::now();
    create(&t.store, &id).await;
    t.store
        .transition(
            &id,
            &Transition {
                reason: Some("charge outcome unknown".into()),
                rule: Some("payment.timeout.pending".into()),
                event: "payment.timeout".into(),
                actor: "payment-worker/h1".into(),
                correlation_id: "corr-7".into(),
                ..mv(1, Received, Reserved)
            },
        )
        .await
        .unwrap();
    t.store
        .transition(&id, &mv(2, Reserved, Paid))
        .await
        .unwrap();

    let audit = t.store.order_audit(&id).await.unwrap();
    assert_eq!(audit.len(), 3, "creation plus one entry per transition");

    let created = &audit[0];
    assert_eq!(
        (created.from, created.to, created.version),
        (None, Received, 1)
    );
    assert_eq!(created.event, CREATED_EVENT);
    assert_eq!(created.actor, "test");

    let e = &audit[1];
    assert_eq!(e.order_id, id);
    assert_eq!((e.from, e.to, e.version), (Some(Received), Reserved, 2));
    assert_eq!(e.event, "payment.timeout");
    assert_eq!(e.actor, "payment-worker/h1");
    assert_eq!(e.reason.as_deref(), Some("charge outcome unknown"));
    assert_eq!(e.rule.as_deref(), Some("payment.timeout.pending"));
    assert_eq!(e.correlation_id, "corr-7");
    assert_eq!(e.policy_id, policy().as_str());

    let last = &audit[2];
    assert_eq!(
        (last.from, last.to, last.version),
        (Some(Reserved), Paid, 3)
    );
    assert_eq!((last.reason.as_deref(), last.rule.as_deref()), (None, None));

    // `at` is the server's time as RFC 3339 with milliseconds, in order.
    let slack = jiff::SignedDuration::from_secs(5);
    for pair in audit.windows(2) {
        assert!(pair[0].at <= pair[1].at);
    }
    assert!(audit[0].at >= before - slack && audit[2].at <= jiff::Timestamp::now() + slack);
    let mut raw = t.raw();
    let stored: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(t.key("order:{audited}:audit"))
        .arg("-")
        .arg("+")
        .query(&mut raw)
        .unwrap();
    let at = &stored[1].1["at"];
    assert_eq!(at.len(), "2026-11-01T12:34:56.789Z".len(), "{at}");
    assert!(at.ends_with('Z') && at.as_bytes()[19] == b'.', "{at}");
    assert_eq!(at.parse::<jiff::Timestamp>().unwrap(), e.at);
    // The entry id and `at` both come from the server's clock.
    let id_ms: i64 = stored[1].0.split('-').next().unwrap().parse().unwrap();
    assert!((e.at.as_millisecond() - id_ms).abs() < 1000);
}

both!(the_fleet_stream_has_every_order_and_pages_by_entry_id);
async fn the_fleet_stream_has_every_order_and_pages_by_entry_id(backend: Backend) {
    let t = TestNs::new(backend).await;
    let (a, b) = (order_id("fleet-a"), order_id("fleet-b"));
    create(&t.store, &a).await;
    create(&t.store, &b).await;
    t.store
        .transition(&a, &mv(1, Received, Reserved))
        .await
        .unwrap();

    let all = t.store.fleet_audit(None, 100).await.unwrap();
    let seen: Vec<_> = all
        .iter()
        .map(|e| (e.order_id.as_str(), e.version))
        .collect();
    assert_eq!(seen, [("fleet-a", 1), ("fleet-b", 1), ("fleet-a", 2)]);
    // Same content as the per-order record, apart from the stream id.
    let per_order = t.store.order_audit(&a).await.unwrap();
    assert_eq!(
        (all[2].at, &all[2].event, all[2].to),
        (per_order[1].at, &per_order[1].event, per_order[1].to)
    );

    let first = t.store.fleet_audit(None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = t.store.fleet_audit(Some(&first[1].id), 100).await.unwrap();
    assert_eq!(rest, all[2..]);
    assert!(matches!(
        t.store.fleet_audit(Some("not-an-id"), 1).await,
        Err(Error::InvalidArgument(_))
    ));
}

both!(the_state_index_counts_and_lists_orders_by_state);
async fn the_state_index_counts_and_lists_orders_by_state(backend: Backend) {
    let t = TestNs::new(backend).await;
    for name in ["idx-1", "idx-2", "idx-3", "idx-4"] {
        create(&t.store, &order_id(name)).await;
    }
    t.store
        .transition(&order_id("idx-1"), &mv(1, Received, Reserved))
        .await
        .unwrap();
    t.store
        .transition(&order_id("idx-2"), &mv(1, Received, Rejected))
        .await
        .unwrap();
    t.store
        .transition(&order_id("idx-1"), &mv(2, Reserved, Paid))
        .await
        .unwrap();

    let counts = t.store.count_by_state().await.unwrap();
    assert_eq!(counts.len(), OrderState::ALL.len());
    for (state, count) in &counts {
        let expected = match state {
            Received => 2,
            Paid | Rejected => 1,
            _ => 0,
        };
        assert_eq!(*count, expected, "{state}");
    }

    let received = t.store.orders_in_state(Received, 10).await.unwrap();
    let ids: Vec<_> = received.iter().map(|e| e.order_id.as_str()).collect();
    assert_eq!(ids, ["idx-3", "idx-4"], "longest waiting first");
    assert_eq!(t.store.orders_in_state(Received, 1).await.unwrap().len(), 1);
    assert!(
        t.store
            .orders_in_state(Reserved, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

both!(a_lagging_index_entry_is_left_out_and_repaired);
async fn a_lagging_index_entry_is_left_out_and_repaired(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("lagging");
    create(&t.store, &id).await;
    // What a crash between the order's script and the index update leaves.
    let mut raw = t.raw();
    let _: () = raw.zadd(t.key("index:paid"), "lagging", 1).unwrap();
    let _: () = raw.zadd(t.key("index:paid"), "gone", 1).unwrap();

    assert!(t.store.orders_in_state(Paid, 10).await.unwrap().is_empty());
    let members: Vec<String> = raw.zrange(t.key("index:paid"), 0, -1).unwrap();
    assert!(members.is_empty(), "{members:?}");
    assert_eq!(
        t.store.orders_in_state(Received, 10).await.unwrap().len(),
        1
    );
    assert_eq!(t.store.reindex_order(&id).await.unwrap(), Some(Received));
    assert_eq!(
        t.store.reindex_order(&order_id("gone")).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn audit_times_are_right_on_awkward_days() {
    // The Lua date arithmetic, checked against jiff on leap days, year ends
    // and century rules. Pure Lua: one backend is enough.
    let t = TestNs::new(Backend::Single).await;
    let format = redis::Script::new(&format!(
        "{}\nreturn rfc3339(tonumber(ARGV[1]))",
        include_str!("../../src/scripts/audit.lua")
    ));
    let mut raw = t.raw();
    for text in [
        "1970-01-01T00:00:00.000Z",
        "2000-02-29T23:59:59.999Z",
        "2024-12-31T23:59:59.001Z",
        "2025-01-01T00:00:00.000Z",
        "2026-11-08T07:05:03.042Z",
        "2100-03-01T12:00:00.500Z",
    ] {
        let at: jiff::Timestamp = text.parse().unwrap();
        let formatted: String = format.arg(at.as_millisecond()).invoke(&mut raw).unwrap();
        assert_eq!(formatted, text);
    }
}

both!(the_fleet_stream_is_capped_and_the_order_stream_is_not);
async fn the_fleet_stream_is_capped_and_the_order_stream_is_not(backend: Backend) {
    let t = TestNs::new(backend).await;
    let store = Store::connect_with(
        &backend.url(),
        StoreOptions {
            namespace: t.ns.clone(),
            fleet_audit_maxlen: 10,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let id = order_id("chatty");
    create(&store, &id).await;
    let note = Note {
        event: "recheck".into(),
        reason: None,
        actor: "reconciler".into(),
        correlation_id: "corr-1".into(),
        policy_id: policy(),
        rule: None,
    };
    for _ in 0..299 {
        store.note(&id, &note).await.unwrap();
    }
    assert_eq!(store.order_audit(&id).await.unwrap().len(), 300);
    // `MAXLEN ~` trims whole stream nodes (100 entries by default).
    let fleet: u64 = redis::cmd("XLEN")
        .arg(t.key("audit"))
        .query(&mut t.raw())
        .unwrap();
    assert!((10..=110).contains(&fleet), "fleet stream holds {fleet}");
}

both!(paging_through_a_state_reaches_every_order_that_stays_in_it);
async fn paging_through_a_state_reaches_every_order_that_stays_in_it(backend: Backend) {
    let t = TestNs::new(backend).await;
    // Same score for all: the index orders ties by member.
    let mut raw = t.raw();
    let names = ["pg-a", "pg-b", "pg-c", "pg-d", "pg-e"];
    for name in names {
        create(&t.store, &order_id(name)).await;
        let _: () = raw.zadd(t.key("index:received"), name, 1000).unwrap();
    }
    let first = t
        .store
        .orders_in_state_after(Received, None, 2)
        .await
        .unwrap();
    let ids: Vec<_> = first.entries.iter().map(|e| e.order_id.as_str()).collect();
    assert_eq!(ids, ["pg-a", "pg-b"]);
    // The cursor's order leaves the state between two pages.
    t.store
        .transition(&order_id("pg-b"), &mv(1, Received, Reserved))
        .await
        .unwrap();
    let second = t
        .store
        .orders_in_state_after(Received, first.next.as_ref(), 2)
        .await
        .unwrap();
    let ids: Vec<_> = second.entries.iter().map(|e| e.order_id.as_str()).collect();
    assert_eq!(ids, ["pg-c", "pg-d"], "nothing that stayed is skipped");
    let third = t
        .store
        .orders_in_state_after(Received, second.next.as_ref(), 2)
        .await
        .unwrap();
    let ids: Vec<_> = third.entries.iter().map(|e| e.order_id.as_str()).collect();
    assert_eq!(ids, ["pg-e"]);
    assert_eq!(third.next, None, "the last page says so");
}

both!(concurrent_writes_of_many_orders_all_reach_the_fleet_audit_and_the_index);
async fn concurrent_writes_of_many_orders_all_reach_the_fleet_audit_and_the_index(
    backend: Backend,
) {
    // The fleet-wide follow-ups of concurrent writes share pipelines
    // (`coalesce`): none may be lost or land for the wrong order.
    let t = TestNs::new(backend).await;
    let ids: Vec<_> = (0..40).map(|i| order_id(&format!("many-{i}"))).collect();
    for id in &ids {
        create(&t.store, id).await;
    }
    let writes = ids.iter().map(|id| {
        let store = t.store.clone();
        async move { store.transition(id, &mv(1, Received, Reserved)).await }
    });
    for written in futures_util::future::join_all(writes).await {
        written.unwrap();
    }

    let fleet = t.store.fleet_audit(None, 1_000).await.unwrap();
    for id in &ids {
        let moves: Vec<_> = fleet
            .iter()
            .filter(|e| &e.order_id == id)
            .map(|e| (e.from, e.to))
            .collect();
        assert_eq!(
            moves,
            [(None, Received), (Some(Received), Reserved)],
            "{id}"
        );
    }
    let reserved = t.store.count_by_state().await.unwrap();
    assert_eq!(reserved.get(&Reserved), Some(&40));
    assert_eq!(reserved.get(&Received), Some(&0));
}
