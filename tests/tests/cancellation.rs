//! `order.cancel/v1` at each point of an order's life (docs/stage-logic.md,
//! "Cancellation"): before payment the stock is released; paid but not
//! shipped, the charge is refunded and the stock released; once the
//! carrier accepted the shipment, a person decides (`blocked`,
//! `cancel_after_shipment`); an order that has ended is not touched.

use orderflow_testkit::{
    Cancel, Endpoint, Fleet, FleetOptions, Order, OrderState, PaymentState, ReservationState,
    Stage, reservation_states,
};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_before_payment_releases_the_reservation() {
    // The payment provider is down, so the order waits in `reserved`.
    let fleet = Fleet::start(
        FleetOptions::new().profile("[faults.\"payment.charge\"]\nunavailable_503 = 1.0\n"),
    )
    .await;
    let id = fleet.place(&Order::new("ord-cancel-reserved")).await;
    fleet.wait_state(&id, &[OrderState::Reserved], SETTLE).await;
    fleet
        .wait_ledger("a refused charge", SETTLE, |l| {
            l.calls_to(Endpoint::PaymentCharge) >= 1
        })
        .await;
    fleet.cancel(&Cancel::new(&id)).await;

    let record = fleet
        .wait_state(&id, &[OrderState::Cancelled], SETTLE)
        .await;
    assert!(record.reason.is_some());
    let ledger = fleet.ledger().await;
    assert_eq!(
        reservation_states(&ledger, &id),
        [ReservationState::Released]
    );
    assert!(ledger.payments.is_empty());
    assert!(ledger.shipments.is_empty());
    fleet
        .wait_events(&id, "order.cancelled", SETTLE, |events| {
            events.iter().any(|e| e.routing_key == "order.cancelled")
        })
        .await;
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_paid_order_refunds_and_releases() {
    // The carrier is down, so the paid order waits for shipping.
    let fleet = Fleet::start(
        FleetOptions::new().profile("[faults.\"shipping.create\"]\nunavailable_503 = 1.0\n"),
    )
    .await;
    let id = fleet.place(&Order::new("ord-cancel-paid")).await;
    fleet.wait_state(&id, &[OrderState::Paid], SETTLE).await;
    fleet
        .wait_ledger("a refused shipment", SETTLE, |l| {
            l.calls_to(Endpoint::ShippingCreate) >= 1
        })
        .await;
    fleet.cancel(&Cancel::new(&id)).await;

    fleet
        .wait_state(&id, &[OrderState::Cancelled], SETTLE)
        .await;
    let ledger = fleet.ledger().await;
    let payment = ledger.payments.iter().find(|p| p.order_id == id).unwrap();
    assert_eq!(payment.state, PaymentState::Refunded);
    assert_eq!(
        reservation_states(&ledger, &id),
        [ReservationState::Released]
    );
    assert!(ledger.shipments.is_empty());
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_after_the_shipment_was_accepted_blocks_the_order() {
    let fleet =
        Fleet::start(FleetOptions::new().profile("[shipping]\nfulfilment_step_ms = 60000\n")).await;
    let id = fleet.place(&Order::new("ord-cancel-shipped")).await;
    fleet
        .wait_state(&id, &[OrderState::ShipmentAccepted], SETTLE)
        .await;
    fleet.cancel(&Cancel::new(&id)).await;

    let record = fleet.wait_state(&id, &[OrderState::Blocked], SETTLE).await;
    assert_eq!(record.reason.as_deref(), Some("cancel_after_shipment"));
    let ledger = fleet.ledger().await;
    assert_eq!(
        ledger.payments[0].state,
        PaymentState::Succeeded,
        "no refund"
    );
    assert_eq!(
        reservation_states(&ledger, &id),
        [ReservationState::Committed]
    );
    assert_eq!(ledger.shipments.len(), 1);
    assert_eq!(ledger.calls_to(Endpoint::PaymentRefund), 0);
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_delivered_order_changes_nothing() {
    let fleet =
        Fleet::start(FleetOptions::new().profile("[shipping]\nfulfilment_step_ms = 100\n")).await;
    let id = fleet.place(&Order::new("ord-cancel-late")).await;
    let before = fleet
        .wait_state(&id, &[OrderState::Delivered], SETTLE)
        .await;
    fleet.cancel(&Cancel::new(&id)).await;

    let parked = fleet
        .wait_parked(Stage::Inventory, "the refused cancellation", SETTLE, |p| {
            p.order_id().as_deref() == Some(id.as_str())
        })
        .await;
    assert_eq!(parked.reason(), Some("cancel_refused"), "{parked:?}");
    let after = fleet.expect_order(&id).await;
    assert_eq!(after.state, OrderState::Delivered);
    // The request is recorded on the order (a version step), but nothing
    // moves: every audit entry after delivery stays in `delivered`.
    let audit = fleet.audit(&id).await;
    assert!(
        audit
            .iter()
            .filter(|e| e.version > before.version)
            .all(|e| e.from == Some(OrderState::Delivered) && e.to == OrderState::Delivered),
        "{}",
        fleet.history(&id).await
    );
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.calls_to(Endpoint::PaymentRefund), 0);
    assert_eq!(ledger.calls_to(Endpoint::InventoryRelease), 0);
    fleet.settle_and_check(SETTLE).await;
}
