//! `list` and `peek` read without consuming.

use crate::common::{Fleet, escalation, malformed, step};
use orderflow_core::{Certainty, FailureClass, Stage};
use orderflow_ops::exceptions::{self, BodyKind};

#[tokio::test]
async fn list_groups_by_stage_class_certainty_and_reason_and_consumes_nothing() {
    let fleet = Fleet::new().await;
    for n in 0..3 {
        let order = format!("o-{n}");
        let id = format!("{order}.payment.v4.0");
        fleet
            .park_step(Stage::Payment, &order, &id, "payment_unresolved")
            .await;
    }
    let mut exhausted = escalation(
        Stage::Payment,
        "o-9",
        "o-9.payment.v7.0",
        "payment_retries_exhausted",
    );
    exhausted.class = Some(FailureClass::Transient);
    exhausted.certainty = Some(Certainty::NotApplied);
    fleet
        .park(Stage::Payment, &step("o-9", Stage::Payment), exhausted)
        .await;
    fleet
        .park(
            Stage::Inventory,
            b"{\"schema\":\"order.placed/v1\"}",
            malformed("m-1", "/order_id: missing"),
        )
        .await;

    let listing = exceptions::list(&fleet.queues, None, None, 100)
        .await
        .unwrap();
    assert_eq!(listing.groups.len(), 3, "{:#?}", listing.groups);
    let unresolved = listing
        .groups
        .iter()
        .find(|g| g.reason == "payment_unresolved")
        .unwrap();
    assert_eq!(unresolved.count, 3);
    assert_eq!(unresolved.stage, Stage::Payment);
    assert_eq!(unresolved.class, Some(FailureClass::Timeout));
    assert_eq!(unresolved.certainty, Some(Certainty::Unknown));
    assert!(
        unresolved.action.contains("order resolve"),
        "{}",
        unresolved.action
    );
    assert!(unresolved.oldest_age_secs.unwrap() > 0);
    assert_eq!(unresolved.order_ids, ["o-0", "o-1", "o-2"]);
    let bad = listing
        .groups
        .iter()
        .find(|g| g.reason == "malformed")
        .unwrap();
    assert_eq!(bad.stage, Stage::Inventory);
    assert!(bad.action.contains("exceptions edit"), "{}", bad.action);
    assert!(listing.queues.iter().all(|q| q.complete));

    let only = exceptions::list(
        &fleet.queues,
        Some(Stage::Payment),
        Some("payment_retries_exhausted"),
        100,
    )
    .await
    .unwrap();
    assert_eq!(only.groups.len(), 1);
    assert_eq!(only.groups[0].count, 1);
    assert_eq!(only.queues.len(), 1);

    assert_eq!(
        fleet.depth(&fleet.exceptions(Stage::Payment)).await,
        4,
        "list consumed nothing"
    );
    assert_eq!(fleet.depth(&fleet.exceptions(Stage::Inventory)).await, 1);
    fleet.stop().await;
}

#[tokio::test]
async fn list_reads_at_most_its_limit_and_says_so() {
    let fleet = Fleet::new().await;
    for n in 0..5 {
        let order = format!("o-{n}");
        fleet
            .park_step(Stage::Shipping, &order, &format!("{order}.s"), "stuck")
            .await;
    }
    let listing = exceptions::list(&fleet.queues, Some(Stage::Shipping), None, 3)
        .await
        .unwrap();
    assert_eq!(listing.queues[0].read, 3);
    assert_eq!(listing.queues[0].depth, 5);
    assert!(!listing.queues[0].complete);
    assert_eq!(listing.groups[0].count, 3);
    assert_eq!(fleet.depth(&fleet.exceptions(Stage::Shipping)).await, 5);
    fleet.stop().await;
}

#[tokio::test]
async fn peek_shows_the_first_messages_exactly_without_consuming() {
    let fleet = Fleet::new().await;
    fleet
        .park_step(
            Stage::Payment,
            "o-1",
            "o-1.payment.v4.0",
            "payment_unresolved",
        )
        .await;
    fleet
        .park_step(
            Stage::Payment,
            "o-2",
            "o-2.payment.v4.0",
            "payment_unresolved",
        )
        .await;
    fleet
        .park_step(
            Stage::Payment,
            "o-3",
            "o-3.payment.v4.0",
            "payment_unresolved",
        )
        .await;
    let peeked = exceptions::peek(&fleet.queues, Stage::Payment, 2)
        .await
        .unwrap();
    assert_eq!(peeked.len(), 2);
    let first = &peeked[0];
    assert_eq!(first.message.id, "o-1.payment.v4.0");
    assert_eq!(first.message.kind, BodyKind::Step);
    assert_eq!(first.message.attempt, Some(4));
    assert_eq!(first.message.order_id.as_deref(), Some("o-1"));
    assert_eq!(
        first.record.body_bytes().unwrap(),
        step("o-1", Stage::Payment)
    );
    let headers = first.record.properties.headers.as_ref().unwrap();
    assert!(headers.contains_key("orderflow-reason"));
    assert!(headers.contains_key("orderflow-first-attempt-at"));
    let json = serde_json::to_value(&peeked).unwrap();
    assert_eq!(json[1]["message"]["id"], "o-2.payment.v4.0");
    assert_eq!(fleet.depth(&fleet.exceptions(Stage::Payment)).await, 3);
    let again = exceptions::peek(&fleet.queues, Stage::Payment, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 3, "peeking twice sees the same messages");
    assert_eq!(again[0].message.id, "o-1.payment.v4.0", "in queue order");
    fleet.stop().await;
}

#[tokio::test]
async fn a_namespace_without_queues_is_named_as_such() {
    let ns = format!("t-{}", uuid::Uuid::new_v4().simple());
    let Err(err) = exceptions::ExceptionQueues::connect(&crate::common::amqp_url(), &ns).await
    else {
        panic!("connected to an undeclared namespace");
    };
    assert_eq!(err.kind(), orderflow_ops::Kind::Invalid);
    assert!(
        err.to_string().contains(&format!("namespace `{ns}`")),
        "{err}"
    );
}
