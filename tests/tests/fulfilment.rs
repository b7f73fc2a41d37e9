//! After acceptance (docs/design.md §4, shipping: "fulfilment exception or no
//! progress past threshold"): the reconciler tracks the shipment and
//! escalates an exception or a stall, with a customer event, rolling
//! nothing back.

use orderflow_testkit::{
    Fleet, FleetOptions, Order, OrderState, PaymentState, ReservationState, ShipmentState, fixtures,
};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fulfilment_exception_is_escalated() {
    let fleet = Fleet::start(
        FleetOptions::new()
            .profile("[shipping]\nfulfilment_step_ms = 150\nfulfilment_exception = 1.0\n"),
    )
    .await;
    let id = fleet.place(&Order::new("ord-ful-exception")).await;
    let record = fleet
        .wait_state(&id, &[OrderState::Escalated], SETTLE)
        .await;
    assert_eq!(record.reason.as_deref(), Some("fulfilment_exception"));

    let ledger = fleet.ledger().await;
    assert_eq!(ledger.shipments.len(), 1);
    assert_eq!(ledger.shipments[0].state, ShipmentState::Exception);
    assert_eq!(ledger.payments[0].state, PaymentState::Succeeded);
    assert_eq!(ledger.reservations[0].state, ReservationState::Committed);
    let events = fleet
        .wait_events(&id, "order.escalated", SETTLE, |events| {
            events.iter().any(|e| e.routing_key == "order.escalated")
        })
        .await;
    assert!(
        events
            .iter()
            .any(|e| e.routing_key == "order.escalated" && e.reason.is_some()),
        "the customer event carries the reason: {events:?}"
    );
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipment_without_progress_is_escalated_as_stalled() {
    let fleet = Fleet::start(
        FleetOptions::new()
            .policy_fixture(fixtures::FULFILMENT_STALL)
            .profile("[shipping]\nfulfilment_step_ms = 600000\n"),
    )
    .await;
    let id = fleet.place(&Order::new("ord-ful-stalled")).await;
    fleet
        .wait_state(&id, &[OrderState::ShipmentAccepted], SETTLE)
        .await;
    let record = fleet
        .wait_state(&id, &[OrderState::Escalated], SETTLE)
        .await;
    assert_eq!(record.reason.as_deref(), Some("fulfilment_stalled"));
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.shipments.len(), 1);
    assert_eq!(ledger.shipments[0].state, ShipmentState::Accepted);
    assert!(
        ledger.calls_to(orderflow_testkit::Endpoint::ShippingStatus) >= 2 + fleet.contract_checks(),
        "the reconciler polled: {:?}",
        ledger.calls
    );
    fleet
        .wait_events(&id, "order.escalated", SETTLE, |events| {
            events.iter().any(|e| e.routing_key == "order.escalated")
        })
        .await;
    fleet.settle_and_check(SETTLE).await;
}
