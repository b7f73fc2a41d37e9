//! `edit` and `discard`.

use crate::common::{Fleet, escalation, malformed, placed, step};
use orderflow_core::{OrderState, Stage};
use orderflow_ops::exceptions::{self, Audited, EditReport, EditRequest};
use orderflow_ops::{Error, Kind};
use serde_json::Value;

fn broken_order() -> Vec<u8> {
    let mut order = placed("o-fix");
    order["shipping_address"]["country"] = "de".into();
    order["items"][0]["quantity"] = 0.into();
    order.to_string().into_bytes()
}

#[tokio::test]
async fn a_malformed_message_is_edited_checked_and_replayed() {
    let fleet = Fleet::new().await;
    fleet
        .park(
            Stage::Inventory,
            &broken_order(),
            malformed("m-1", "/items/0/quantity: …; /shipping_address/country: …"),
        )
        .await;
    let subject = exceptions::open_edit(&fleet.queues, Stage::Inventory, "m-1", 100)
        .await
        .unwrap();
    assert_eq!(subject.body, broken_order());

    // Half a fix is refused with what is still wrong; nothing moves.
    let half =
        exceptions::apply_sets(&subject.body, &["shipping_address.country=DE".into()]).unwrap();
    let refused = exceptions::edit(
        &fleet.queues,
        &fleet.operator(),
        &EditRequest {
            stage: Stage::Inventory,
            id: "m-1".into(),
            expected_sha256: subject.sha256.clone(),
            body: half,
            limit: 100,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refused.kind(), Kind::Invalid);
    assert!(
        refused.to_string().contains("/items/0/quantity"),
        "{refused}"
    );
    assert_eq!(
        fleet.depth(&fleet.exceptions(Stage::Inventory)).await,
        1,
        "the original stays"
    );
    assert_eq!(fleet.depth(&fleet.work(Stage::Inventory)).await, 0);

    let fixed = exceptions::apply_sets(
        &subject.body,
        &[
            "shipping_address.country=DE".into(),
            "/items/0/quantity=1".into(),
        ],
    )
    .unwrap();
    let report = exceptions::edit(
        &fleet.queues,
        &fleet.operator(),
        &EditRequest {
            stage: Stage::Inventory,
            id: "m-1".into(),
            expected_sha256: subject.sha256.clone(),
            body: fixed.clone(),
            limit: 100,
        },
    )
    .await
    .unwrap();
    assert!(report.new_id.starts_with("m-1.edit-"), "{}", report.new_id);
    assert_eq!(report.before_sha256, subject.sha256);
    assert_ne!(report.after_sha256, report.before_sha256);
    assert_eq!(
        fleet.depth(&fleet.exceptions(Stage::Inventory)).await,
        0,
        "the original is gone"
    );
    let sent = fleet.drain(&fleet.work(Stage::Inventory)).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].routing_key(), "order.placed");
    assert_eq!(
        sent[0].meta().message_id.as_deref(),
        Some(report.new_id.as_str())
    );
    assert_eq!(sent[0].meta().extra["orderflow-edit-of"], "m-1");
    assert_eq!(sent[0].body(), fixed);
    assert!(orderflow_core::message::parse_inbound(sent[0].body()).is_ok());

    // The order does not exist yet: the fleet's audit has both hashes.
    let Audited::Fleet { .. } = report.audit else {
        panic!("audited in the fleet stream: {:?}", report.audit);
    };
    let notes = fleet.store.fleet_notes(None, 10).await.unwrap();
    let note = notes.iter().find(|n| n.event == "operator.edit").unwrap();
    assert_eq!(note.actor, "operator:tester");
    let why = note.reason.as_deref().unwrap();
    assert!(
        why.contains(&report.before_sha256) && why.contains(&report.after_sha256),
        "{why}"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn an_edit_of_a_body_that_changed_meanwhile_is_refused() {
    let fleet = Fleet::new().await;
    fleet
        .park(Stage::Inventory, &broken_order(), malformed("m-1", "…"))
        .await;
    let fixed: Value = placed("o-fix");
    let err = exceptions::edit(
        &fleet.queues,
        &fleet.operator(),
        &EditRequest {
            stage: Stage::Inventory,
            id: "m-1".into(),
            expected_sha256: "0".repeat(64),
            body: fixed.to_string().into_bytes(),
            limit: 100,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), Kind::Refused, "{err}");
    assert_eq!(fleet.depth(&fleet.exceptions(Stage::Inventory)).await, 1);
    fleet.stop().await;
}

/// Edits the parked payment step `id` to ask for a deadline check.
async fn edit_step(fleet: &Fleet, id: &str) -> Result<EditReport, Error> {
    let subject = exceptions::open_edit(&fleet.queues, Stage::Payment, id, 100)
        .await
        .unwrap();
    let body = exceptions::apply_sets(&subject.body, &["check=deadline".into()]).unwrap();
    exceptions::edit(
        &fleet.queues,
        &fleet.operator(),
        &EditRequest {
            stage: Stage::Payment,
            id: id.into(),
            expected_sha256: subject.sha256,
            body,
            limit: 100,
        },
    )
    .await
}

/// An edited step is the step sent again: like a replay it keeps its first
/// attempt, and past `exceptions.replay_window` it is not sent — an edit
/// is no way around the window.
#[tokio::test]
async fn an_edited_step_keeps_its_first_attempt_and_the_replay_window() {
    let fleet = Fleet::new().await;
    let order = fleet.order_in("o-step", OrderState::Reserved).await;
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let first = |hours: i64| now_ms - hours * 3_600_000;
    for (id, hours) in [("m-old", 25), ("m-new", 1)] {
        let mut meta = escalation(Stage::Payment, order.as_str(), id, "payment_unresolved");
        meta.first_attempt_at = Some(first(hours));
        fleet
            .park(Stage::Payment, &step(order.as_str(), Stage::Payment), meta)
            .await;
    }

    let refused = edit_step(&fleet, "m-old").await.unwrap_err();
    assert_eq!(refused.kind(), Kind::Refused, "{refused}");
    assert!(
        refused.to_string().contains("exceptions.replay_window"),
        "{refused}"
    );
    assert_eq!(fleet.depth(&fleet.exceptions(Stage::Payment)).await, 2);
    assert_eq!(fleet.depth(&fleet.work(Stage::Payment)).await, 0);

    edit_step(&fleet, "m-new").await.unwrap();
    let sent = fleet.drain(&fleet.work(Stage::Payment)).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].meta().first_attempt_at, Some(first(1)));
    fleet.stop().await;
}

#[tokio::test]
async fn discarding_is_audited_on_the_order_or_in_the_fleet_stream() {
    let fleet = Fleet::new().await;
    let order = fleet.order_in("o-1", OrderState::Escalated).await;
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
        .park(
            Stage::Payment,
            &step("o-3", Stage::Payment),
            malformed("keep-me", "…"),
        )
        .await;

    // An unknown id: nothing is discarded.
    let err = exceptions::discard(
        &fleet.queues,
        &fleet.operator(),
        Stage::Payment,
        &["o-1.payment.v4.0".into(), "nope".into()],
        "resolved by hand",
        100,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), Kind::Invalid);
    assert_eq!(fleet.depth(&fleet.exceptions(Stage::Payment)).await, 3);
    // A reason is required.
    let err = exceptions::discard(
        &fleet.queues,
        &fleet.operator(),
        Stage::Payment,
        &["o-1.payment.v4.0".into()],
        " ",
        100,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), Kind::Invalid);

    let report = exceptions::discard(
        &fleet.queues,
        &fleet.operator(),
        Stage::Payment,
        &["o-1.payment.v4.0".into(), "o-2.payment.v4.0".into()],
        "resolved by hand",
        100,
    )
    .await
    .unwrap();
    assert_eq!(report.discarded.len(), 2);
    assert_eq!(
        fleet.depth(&fleet.exceptions(Stage::Payment)).await,
        1,
        "the other stays"
    );
    let audit = fleet.store.order_audit(&order).await.unwrap();
    let note = audit.last().unwrap();
    assert_eq!(note.event, "operator.discard");
    assert_eq!(note.actor, "operator:tester");
    assert!(note.reason.as_deref().unwrap().contains("resolved by hand"));
    assert!(matches!(report.discarded[0].audit, Audited::Order { .. }));
    // o-2 is unknown to the store: the fleet stream has it.
    assert!(matches!(report.discarded[1].audit, Audited::Fleet { .. }));
    let notes = fleet.store.fleet_notes(None, 10).await.unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.event == "operator.discard" && n.subject.contains("o-2"))
    );
    fleet.stop().await;
}
