//! docs/reliability.md, item 4: an accepted shipment must not be tracked forever. When
//! the carrier's status query stops answering — 404 (the key forgotten past
//! its retention), 5xx, 501 (no status query), or an open breaker — the
//! stall threshold still bounds the wait: past `fulfilment.stall_after`
//! without a confirmed step the order is `escalated`
//! (`fulfilment_untracked`) with what the status query said, parked in
//! `shipping.exceptions` and audited, and nothing is rolled back.
//!
//! The faults are switched on once the shipment is accepted (the carrier's
//! steps are ten minutes apart, so a working status query would keep saying
//! `accepted`): until then the fleet runs against a healthy simulator.

use orderflow_testkit::{
    Fleet, FleetOptions, Order, OrderState, PaymentState, ReservationState, ShipmentState, Stage,
    fixtures,
};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(25);
/// The carrier's steps are far apart: only a failing status query (or a
/// stall) can end the tracking within the test.
const SLOW_CARRIER: &str = "[shipping]\nfulfilment_step_ms = 600000\n";

/// Starts a fleet whose policy escalates after 2 s without progress, has
/// `id` accepted for shipping, then turns `failing` on at the simulator
/// and waits for the escalation. Returns the parked message's detail.
async fn untrackable(id: &str, failing: &str) -> String {
    let mut fleet = Fleet::start(
        FleetOptions::new()
            .policy_fixture(fixtures::FULFILMENT_STALL)
            .profile(SLOW_CARRIER),
    )
    .await;
    let id = fleet.place(&Order::new(id)).await;
    fleet
        .wait_state(&id, &[OrderState::ShipmentAccepted], SETTLE)
        .await;
    fleet.set_profile(failing).await;

    let record = fleet
        .wait_state(&id, &[OrderState::Escalated], SETTLE)
        .await;
    assert_eq!(
        record.reason.as_deref(),
        Some("fulfilment_untracked"),
        "{}",
        fleet.history(&id).await
    );
    let audit = fleet.audit(&id).await;
    let escalation = audit
        .iter()
        .find(|e| e.to == OrderState::Escalated)
        .expect("the escalation is audited");
    assert_eq!(escalation.from, Some(OrderState::ShipmentAccepted));
    assert_eq!(escalation.reason.as_deref(), Some("fulfilment_untracked"));
    assert_eq!(
        escalation.rule.as_deref(),
        Some("fulfilment.untracked.escalate")
    );
    let parked = fleet
        .wait_parked(Stage::Shipping, "fulfilment_untracked", SETTLE, |p| {
            p.order_id().as_deref() == Some(id.as_str())
                && p.reason() == Some("fulfilment_untracked")
        })
        .await;
    let detail = parked.meta.last_error.clone().unwrap_or_default();
    assert!(
        detail.contains("status query") && detail.contains("fulfilment.stall_after"),
        "the detail says what failed and for how long: {detail}"
    );

    // Nothing was rolled back: the parcel, the charge and the sold stock stand.
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.shipments.len(), 1);
    assert_eq!(ledger.shipments[0].state, ShipmentState::Accepted);
    assert_eq!(ledger.payments.len(), 1);
    assert_eq!(ledger.payments[0].state, PaymentState::Succeeded);
    assert_eq!(ledger.reservations[0].state, ReservationState::Committed);
    fleet
        .wait_events(&id, "order.escalated", SETTLE, |events| {
            events.iter().any(|e| e.routing_key == "order.escalated")
        })
        .await;
    fleet.settle_and_check(SETTLE).await;
    detail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipment_whose_status_query_answers_404_is_escalated() {
    let detail = untrackable(
        "ord-track-404",
        &format!("{SLOW_CARRIER}[faults.\"shipping.status\"]\nnot_found_404 = 1.0\n"),
    )
    .await;
    assert!(detail.contains("not_found"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipment_whose_status_query_answers_500_is_escalated() {
    let detail = untrackable(
        "ord-track-500",
        &format!("{SLOW_CARRIER}[faults.\"shipping.status\"]\nerror_500 = 1.0\n"),
    )
    .await;
    // 500s trip the breaker in the end (`overloaded`, never sent): either is
    // what the detail names.
    assert!(
        detail.contains("internal_error") || detail.contains("overloaded"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipment_at_a_carrier_without_status_query_is_escalated() {
    let detail = untrackable(
        "ord-track-501",
        "[shipping]\nfulfilment_step_ms = 600000\nstatus_query = false\n",
    )
    .await;
    assert!(detail.contains("not_implemented"), "{detail}");
}
