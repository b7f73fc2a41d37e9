//! The stage loop on the real broker and store.

mod support;

use orderflow_broker::stream::{self, Offset, StreamMessage};
use orderflow_broker::{Meta, admin};
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Stage};
use orderflow_runtime::noop;
use std::ops::ControlFlow;
use std::time::Duration;
use support::{Fleet, redis_url};

const WITHIN: Duration = Duration::from_secs(20);

/// Waits until `queue` holds at least `expected` ready messages and
/// returns its depth then; fails after [`WITHIN`].
async fn wait_depth(fleet: &Fleet, queue: &str, expected: u32) -> u32 {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let depth = fleet.depth(queue).await;
        if depth >= expected {
            return depth;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue} holds {depth} messages, not {expected}, after {WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the events stream holds at least `expected` events and
/// returns them all then; fails after [`WITHIN`].
async fn wait_events(fleet: &Fleet, expected: usize) -> Vec<StreamMessage> {
    let name = fleet.spec.events().name.clone();
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mut events = Vec::new();
    loop {
        let from = Offset::Exact(events.len() as u64);
        stream::read(&fleet.conn, &name, from, Duration::from_millis(100), |m| {
            events.push(m);
            ControlFlow::Continue(())
        })
        .await
        .expect("read the events stream");
        if events.len() >= expected {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} holds {} events, not {expected}, after {WITHIN:?}",
            events.len()
        );
    }
}

#[tokio::test]
async fn orders_move_through_every_stage_once_with_one_audit_entry_per_transition() {
    let fleet = Fleet::start(&redis_url()).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(fleet.place(&format!("o-{n}")).await);
    }
    fleet.wait_all(&ids, OrderState::Delivered, WITHIN).await;
    for id in &ids {
        let audit = fleet.store.order_audit(id).await.unwrap();
        let moves: Vec<_> = audit.iter().map(|e| e.to).collect();
        assert_eq!(moves, noop::ROUTE, "{id}");
        assert!(
            audit
                .iter()
                .all(|e| e.correlation_id == format!("corr-{id}"))
        );
        assert!(
            audit[1..]
                .iter()
                .all(|e| e.policy_id == fleet.store_policy_id().as_str())
        );
        for state in &noop::ROUTE[1..] {
            assert_eq!(fleet.runs_into(id, *state), 1);
        }
    }
    // One event per hop and order (each is published just after its move).
    let events = wait_events(&fleet, 80).await;
    assert_eq!(events.len(), 80);
    let meta = &events[0].meta;
    assert!(meta.message_id.is_some() && meta.timestamp.is_some());
    assert!(
        meta.correlation_id
            .as_deref()
            .is_some_and(|c| c.starts_with("corr-o-"))
    );
    assert_eq!(
        meta.policy_id.as_deref(),
        Some(fleet.store_policy_id().as_str())
    );
    assert!(meta.order_id.is_some());
    fleet.stop().await;
}

#[tokio::test]
async fn a_malformed_message_is_parked_once_and_the_worker_goes_on() {
    let fleet = Fleet::start(&redis_url()).await;
    let queue = fleet.spec.names().work_queue(Stage::Payment);
    let meta = Meta {
        message_id: Some("garbage-1".into()),
        ..Meta::default()
    };
    fleet
        .publisher
        .to_queue(&queue, b"{\"not\": \"a step\"".to_vec(), meta)
        .await
        .unwrap();
    let id = fleet.place("o-after-garbage").await;
    fleet.wait_all(&[id], OrderState::Delivered, WITHIN).await;

    let exceptions = fleet.spec.names().exception_queue(Stage::Payment);
    let parked = admin::get(&fleet.conn, &exceptions)
        .await
        .unwrap()
        .expect("parked");
    let message = parked.message();
    assert_eq!(message.body(), b"{\"not\": \"a step\"");
    assert_eq!(message.meta().reason.as_deref(), Some("malformed"));
    assert!(
        message.meta().extra["orderflow-validation-errors"]
            .contains("not a orderflow.step/v1 message")
    );
    parked
        .settle(orderflow_broker::Settlement::Ack)
        .await
        .unwrap();
    assert_eq!(
        fleet.depth(&exceptions).await,
        0,
        "parked exactly once, never retried"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn an_overlapping_duplicate_is_deferred_not_run_alongside() {
    let fleet = Fleet::start(&redis_url()).await;
    let id = OrderId::parse("o-leased").unwrap();
    fleet
        .store
        .create_order(
            &id,
            &serde_json::json!({}),
            "corr",
            &orderflow_core::Policy::default_policy().id(),
            "test",
        )
        .await
        .unwrap();
    // Another worker holds the inventory lease of this order.
    let held = fleet
        .store
        .acquire_lease(
            &id,
            Stage::Inventory,
            "someone-else",
            Duration::from_secs(30),
        )
        .await
        .unwrap()
        .expect("lease");
    fleet.publish_step(&id, Stage::Inventory, "dup-1").await;
    // The worker has decided about the duplicate once its copy waits on
    // the first delay tier: it was deferred, and it comes back until the
    // lease is free.
    let deferred = &fleet.spec.delay_queue(Stage::Inventory, 0).queue;
    wait_depth(&fleet, deferred, 1).await;
    assert_eq!(
        fleet.store.get_order(&id).await.unwrap().unwrap().state,
        OrderState::Received
    );
    assert_eq!(
        fleet.runs_into(&id, OrderState::Reserved),
        0,
        "never run beside the holder"
    );

    fleet.store.release(&held).await.unwrap();
    fleet
        .wait_all(std::slice::from_ref(&id), OrderState::Delivered, WITHIN)
        .await;
    assert_eq!(fleet.runs_into(&id, OrderState::Reserved), 1);
    fleet.stop().await;
}

#[tokio::test]
async fn a_redelivered_message_re_emits_its_record_and_repeats_nothing() {
    let fleet = Fleet::start(&redis_url()).await;
    let id = fleet.place("o-again").await;
    fleet
        .wait_all(std::slice::from_ref(&id), OrderState::Delivered, WITHIN)
        .await;
    let before = wait_events(&fleet, 4).await.len();
    assert_eq!(before, 4, "one event per hop");

    // The same inventory message again, as after a crash before its ack.
    fleet
        .publish_step(&id, Stage::Inventory, "place-o-again")
        .await;
    // Each stage re-emits its record down the chain; the last stage's
    // event is the last thing the duplicate causes.
    let events = wait_events(&fleet, before + 4).await;
    for state in &noop::ROUTE[1..] {
        assert_eq!(
            fleet.runs_into(&id, *state),
            1,
            "no repeated side effect into {state}"
        );
    }
    assert_eq!(
        fleet.store.order_audit(&id).await.unwrap().len(),
        5,
        "no new transition"
    );
    // Each stage's record is re-emitted down the chain (a stage cannot know
    // whether its own publish was lost), with the ids of the first time.
    assert_eq!(events.len(), before + 4);
    let ids: std::collections::BTreeSet<_> = events
        .iter()
        .map(|event| event.meta.message_id.clone().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        4,
        "duplicates carry the original event ids: {ids:?}"
    );
    fleet.stop().await;
}
