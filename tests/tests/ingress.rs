//! What producers send (docs/messages.md), at the door: malformed input is
//! parked once as `malformed` with its validation errors and stops no
//! worker (I7); a repeated `order.placed` makes one order; the same id with
//! another body is an `order_id_conflict`; `supersedes` cancels an earlier
//! order that is still before payment.

use orderflow_testkit::{
    Endpoint, Fleet, FleetOptions, Order, OrderState, ReservationState, Stage,
};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_parked_once_and_stops_no_worker() {
    let fleet =
        Fleet::start(FleetOptions::new().profile("[shipping]\nfulfilment_step_ms = 100\n")).await;
    let mut misspelt = Order::new("ord-misspelt").to_json();
    misspelt["supercedes"] = serde_json::json!("ord-0");
    let mut blank_name = Order::new("ord-blank-name").to_json();
    blank_name["shipping_address"]["name"] = serde_json::json!("   ");
    let inputs: Vec<Vec<u8>> = vec![
        b"this is not json".to_vec(),
        br#"{"schema":"order.placed/v1","order_id":"ord-missing-fields"}"#.to_vec(),
        br#"{"schema":"order.placed/v9","order_id":"ord-future"}"#.to_vec(),
        serde_json::to_vec(&misspelt).unwrap(),
        serde_json::to_vec(&blank_name).unwrap(),
        Vec::new(),
    ];
    for input in &inputs {
        fleet.publish_malformed(input).await;
    }
    // A good order after the bad ones still goes through.
    let good = fleet.place(&Order::new("ord-after-malformed")).await;
    fleet
        .wait_state(&good, &[OrderState::Delivered], SETTLE)
        .await;

    for input in &inputs {
        let parked = fleet
            .wait_parked(Stage::Inventory, "the malformed input", SETTLE, |p| {
                &p.body == input
            })
            .await;
        assert_eq!(parked.reason(), Some("malformed"), "{}", parked.body_text());
        let errors = parked.validation_errors().unwrap_or_default();
        assert!(
            !errors.trim().is_empty(),
            "the validation errors travel in a header: {parked:?}"
        );
    }
    let missing = fleet
        .wait_parked(Stage::Inventory, "the order missing fields", SETTLE, |p| {
            p.body_text().contains("ord-missing-fields")
        })
        .await;
    let errors = missing.validation_errors().unwrap_or_default();
    assert!(
        errors.contains("/customer_id") && errors.contains("/items"),
        "every missing field is named: {errors}"
    );
    let ledger = fleet.ledger().await;
    assert_eq!(
        ledger.calls_to(Endpoint::InventoryReserve),
        1,
        "only the good order reached a downstream"
    );
    for id in [
        "ord-missing-fields",
        "ord-future",
        "ord-misspelt",
        "ord-blank-name",
    ] {
        assert!(
            fleet.order(id).await.is_none(),
            "{id} must not become an order"
        );
    }
    // I7: each parked exactly once, every worker still running.
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_order_placed_again_is_one_order() {
    let fleet =
        Fleet::start(FleetOptions::new().profile("[shipping]\nfulfilment_step_ms = 100\n")).await;
    let order = Order::new("ord-twice");
    let id = fleet.place(&order).await;
    // The producer re-sends: the same message, then the same body under a
    // fresh message id.
    fleet.place(&order).await;
    fleet
        .place_with_message_id(&order, "producer-resend-1")
        .await;
    fleet
        .wait_state(&id, &[OrderState::Delivered], SETTLE)
        .await;
    fleet.place(&order).await;
    // The late duplicate is handled (and everything it caused) once no
    // queue holds or works on a message.
    fleet.wait_quiet(SETTLE).await;

    let ledger = fleet.ledger().await;
    assert_eq!(ledger.reservations.len(), 1);
    assert_eq!(ledger.payments.len(), 1);
    assert_eq!(ledger.shipments.len(), 1);
    let created = fleet
        .audit(&id)
        .await
        .iter()
        .filter(|e| e.from.is_none())
        .count();
    assert_eq!(created, 1, "created once: {}", fleet.history(&id).await);
    let parked = fleet.exceptions(Stage::Inventory).await;
    assert!(
        parked.is_empty(),
        "a duplicate is absorbed, not parked: {parked:?}"
    );
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_with_another_body_is_parked_as_a_conflict() {
    let fleet =
        Fleet::start(FleetOptions::new().profile("[shipping]\nfulfilment_step_ms = 100\n")).await;
    let first = Order::new("ord-conflict");
    let id = fleet.place(&first).await;
    fleet.wait_for(&id, "created", SETTLE, |_| true).await;
    let other = Order::new("ord-conflict").unit_price(99_999);
    let other_body = serde_json::to_vec(&other.to_json()).unwrap();
    fleet.place(&other).await;

    let parked = fleet
        .wait_parked(Stage::Inventory, "the conflicting order", SETTLE, |p| {
            p.reason() == Some("order_id_conflict")
        })
        .await;
    assert_eq!(parked.body, other_body, "parked as it came");
    assert_eq!(parked.order_id().as_deref(), Some(id.as_str()));

    fleet
        .wait_state(&id, &[OrderState::Delivered], SETTLE)
        .await;
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.payments.len(), 1);
    assert_eq!(
        ledger.payments[0].amount,
        first.total(),
        "the first body stands"
    );
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseding_order_cancels_the_earlier_one_before_payment() {
    // Payments are refused for now, so the earlier order waits in
    // `reserved`, before payment.
    let mut fleet = Fleet::start(
        FleetOptions::new().profile("[faults.\"payment.charge\"]\nunavailable_503 = 1.0\n"),
    )
    .await;
    let earlier = fleet
        .place(&Order::new("ord-first-try").customer("cust-7"))
        .await;
    fleet
        .wait_state(&earlier, &[OrderState::Reserved], SETTLE)
        .await;
    let later = fleet
        .place(
            &Order::new("ord-second-try")
                .customer("cust-7")
                .supersedes(&earlier),
        )
        .await;

    let record = fleet
        .wait_state(&earlier, &[OrderState::Cancelled], SETTLE)
        .await;
    let reason = record.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("superseded"),
        "the reason names the supersession: {reason:?}; history {}",
        fleet.history(&earlier).await
    );
    fleet
        .set_profile("[shipping]\nfulfilment_step_ms = 100\n")
        .await;
    fleet
        .wait_state(&later, &[OrderState::Delivered], SETTLE)
        .await;

    let ledger = fleet.ledger().await;
    let earlier_reservations: Vec<_> = ledger
        .reservations
        .iter()
        .filter(|r| r.order_id == earlier)
        .collect();
    assert_eq!(earlier_reservations.len(), 1);
    assert_eq!(earlier_reservations[0].state, ReservationState::Released);
    assert!(ledger.payments.iter().all(|p| p.order_id != earlier));
    fleet.settle_and_check(SETTLE).await;
}
