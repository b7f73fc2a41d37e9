//! The shipping rows of docs/design.md §4: a refused shipment blocks the order
//! for a business decision without rolling back payment or stock; a
//! timeout before the acknowledgement is resolved by status query (found →
//! proceed, not found → the same key again), never with a second shipment.
//!
//! (`invalid_address` cannot be reached end to end: the producer contract
//! already refuses blank address fields, so such an order is `malformed`
//! at the door; `ingress.rs` covers that.)

use orderflow_testkit::{
    Endpoint, Fleet, FleetOptions, Order, OrderState, PaymentState, ReservationState, Stage,
};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_destination_is_blocked_without_rollback() {
    let fleet =
        Fleet::start(FleetOptions::new().profile("[shipping]\nunsupported_countries = [\"ZZ\"]\n"))
            .await;
    let id = fleet.place(&Order::new("ord-ship-zz").country("ZZ")).await;
    let record = fleet.wait_state(&id, &[OrderState::Blocked], SETTLE).await;
    assert_eq!(record.reason.as_deref(), Some("unsupported_destination"));
    let parked = fleet
        .wait_parked(Stage::Shipping, "the blocked order", SETTLE, |p| {
            p.order_id().as_deref() == Some(id.as_str())
        })
        .await;
    assert_eq!(parked.reason(), Some("unsupported_destination"));

    let ledger = fleet.ledger().await;
    assert!(ledger.shipments.is_empty());
    let payment = ledger.payments.iter().find(|p| p.order_id == id).unwrap();
    assert_eq!(
        payment.state,
        PaymentState::Succeeded,
        "the payment is not refunded"
    );
    let reservation = ledger
        .reservations
        .iter()
        .find(|r| r.order_id == id)
        .unwrap();
    assert_eq!(
        reservation.state,
        ReservationState::Reserved,
        "the stock stays held for the decision"
    );
    assert_eq!(
        ledger.calls_to(Endpoint::ShippingCreate),
        1,
        "never retried"
    );
    assert_eq!(ledger.calls_to(Endpoint::PaymentRefund), 0);
    assert_eq!(ledger.calls_to(Endpoint::InventoryRelease), 0);
    fleet
        .wait_events(&id, "order.blocked", SETTLE, |events| {
            events.iter().any(|e| e.routing_key == "order.blocked")
        })
        .await;
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipment_accepted_while_its_answer_was_lost_is_found_by_status_query() {
    let fleet = Fleet::start(FleetOptions::new().profile(
        "[faults.\"shipping.create\"]\ntimeout_after_apply = 1.0\nhang_ms = 1000\n\n[shipping]\nfulfilment_step_ms = 100\n",
    ))
    .await;
    let id = fleet.place(&Order::new("ord-ship-timeout-after")).await;
    fleet
        .wait_state(&id, &[OrderState::Delivered], SETTLE)
        .await;
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.shipments.len(), 1, "exactly one shipment");
    assert!(
        ledger.calls_to(Endpoint::ShippingStatus) > fleet.contract_checks(),
        "{:?}",
        ledger.calls
    );
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipment_that_never_landed_is_sent_again_with_the_same_key() {
    let mut fleet = Fleet::start(
        FleetOptions::new()
            .profile("[faults.\"shipping.create\"]\ntimeout_before_apply = 1.0\nhang_ms = 1000\n"),
    )
    .await;
    let id = fleet.place(&Order::new("ord-ship-timeout-before")).await;
    fleet
        .wait_ledger("a timed-out shipment request", SETTLE, |l| {
            l.calls_to(Endpoint::ShippingCreate) >= 1
        })
        .await;
    let ledger = fleet.ledger().await;
    assert!(ledger.shipments.is_empty());
    let payment = ledger.payments.iter().find(|p| p.order_id == id).unwrap();
    assert_eq!(payment.state, PaymentState::Succeeded);
    fleet
        .set_profile("[shipping]\nfulfilment_step_ms = 100\n")
        .await;
    fleet
        .wait_state(&id, &[OrderState::Delivered], SETTLE)
        .await;

    let ledger = fleet.ledger().await;
    assert_eq!(ledger.shipments.len(), 1, "exactly one shipment");
    assert!(
        ledger.calls_to(Endpoint::ShippingCreate) >= 2,
        "{:?}",
        ledger.calls
    );
    assert!(
        ledger.shipments[0].key.contains(&id),
        "{}",
        ledger.shipments[0].key
    );
    assert_eq!(
        ledger.calls_to(Endpoint::PaymentRefund),
        0,
        "earlier stages stand"
    );
    fleet.settle_and_check(SETTLE).await;
}
