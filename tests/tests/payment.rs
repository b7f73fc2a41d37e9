//! The payment rows of docs/design.md §4: declines fail fast and release the
//! stock; a timeout, a 5xx or a processing charge is resolved by status
//! query, parked as `payment_pending` and re-checked, escalated past the
//! ambiguity window, never shipped, refunded or released on a guess; a
//! failure learned after shipping is a financial exception; a provider that
//! can neither deduplicate nor be asked is never charged twice.

use orderflow_testkit::{
    Cancel, Endpoint, Fleet, FleetOptions, Order, OrderState, PaymentState, ReservationState,
    Stage, fixtures,
};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(25);

fn payments_of<'a>(
    ledger: &'a orderflow_testkit::Ledger,
    id: &str,
) -> Vec<&'a orderflow_testkit::Payment> {
    ledger
        .payments
        .iter()
        .filter(|p| p.order_id == id)
        .collect()
}

/// The provider answers again (the profile keeps only the carrier's
/// steps): the order is delivered, charged once.
async fn answers_again_and_delivers_charged_once(
    fleet: &mut Fleet,
    id: &str,
) -> orderflow_testkit::Ledger {
    fleet
        .set_profile("[shipping]\nfulfilment_step_ms = 100\n")
        .await;
    fleet.wait_state(id, &[OrderState::Delivered], SETTLE).await;
    let ledger = fleet.ledger().await;
    assert_eq!(
        payments_of(&ledger, id).len(),
        1,
        "charged once: {:?}",
        ledger.calls
    );
    ledger
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_short_of_funds_and_fraud_are_rejected_and_release_the_stock() {
    let fleet = Fleet::start(FleetOptions::new()).await;
    let cases = [
        ("ord-pay-declined", "tok_declined", "card_declined"),
        (
            "ord-pay-funds",
            "tok_insufficient_funds",
            "insufficient_funds",
        ),
        ("ord-pay-fraud", "tok_fraud", "fraud_suspected"),
    ];
    for (id, token, _) in cases {
        fleet.place(&Order::new(id).token(token)).await;
    }
    for (id, _, reason) in cases {
        let record = fleet.wait_state(id, &[OrderState::Rejected], SETTLE).await;
        assert_eq!(record.reason.as_deref(), Some(reason), "{id}");
    }
    let ledger = fleet.ledger().await;
    for (id, _, _) in cases {
        assert_eq!(
            orderflow_testkit::reservation_states(&ledger, id),
            [ReservationState::Released],
            "{id}: the reservation is released on a confirmed decline"
        );
        assert!(
            payments_of(&ledger, id).is_empty(),
            "a 402 makes no payment"
        );
    }
    assert!(ledger.shipments.is_empty());
    // Deterministic: never retried.
    assert_eq!(ledger.calls_to(Endpoint::PaymentCharge), 3);
    fleet
        .wait_events("ord-pay-fraud", "order.rejected", SETTLE, |events| {
            events.iter().any(|e| e.routing_key == "order.rejected")
        })
        .await;
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_timeout_after_apply_is_found_by_status_query() {
    let fleet = Fleet::start(FleetOptions::new().profile(
        "[faults.\"payment.charge\"]\ntimeout_after_apply = 1.0\nhang_ms = 1000\n\n[shipping]\nfulfilment_step_ms = 100\n",
    ))
    .await;
    let id = fleet.place(&Order::new("ord-pay-timeout")).await;
    fleet
        .wait_state(&id, &[OrderState::Delivered], SETTLE)
        .await;
    let ledger = fleet.ledger().await;
    let payments = payments_of(&ledger, &id);
    assert_eq!(payments.len(), 1, "exactly one charge: {payments:?}");
    assert_eq!(payments[0].state, PaymentState::Succeeded);
    assert!(
        ledger.calls_to(Endpoint::PaymentStatus) > fleet.contract_checks(),
        "{:?}",
        ledger.calls
    );
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_answered_with_500_is_resolved_before_anything_ships() {
    let mut fleet =
        Fleet::start(FleetOptions::new().profile("[faults.\"payment.charge\"]\nerror_500 = 1.0\n"))
            .await;
    let id = fleet.place(&Order::new("ord-pay-500")).await;
    fleet
        .wait_ledger("a charge answered with 500", SETTLE, |l| {
            l.calls_to(Endpoint::PaymentCharge) >= 1
        })
        .await;
    let ledger = fleet.ledger().await;
    assert!(
        ledger.shipments.is_empty(),
        "nothing ships on an unknown charge"
    );
    let ledger = answers_again_and_delivers_charged_once(&mut fleet, &id).await;
    assert!(
        ledger.calls_to(Endpoint::PaymentStatus) > fleet.contract_checks(),
        "a 5xx after sending is an unknown outcome: asked before charging again ({:?})",
        ledger.calls
    );
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_refused_until_deferred_is_sent_again_without_asking_first() {
    let mut fleet = Fleet::start(
        FleetOptions::new().profile("[faults.\"payment.charge\"]\nunavailable_503 = 1.0\n"),
    )
    .await;
    let id = fleet.place(&Order::new("ord-pay-refused")).await;
    // Three refused attempts, then the deferred copy's first charge: the
    // run that deferred knew nothing was charged, so the copy sends at
    // once rather than ask the provider about a charge that never was.
    let ledger = fleet
        .wait_ledger("the deferred copy's charge", SETTLE, |l| {
            l.calls_to(Endpoint::PaymentCharge) >= 4
        })
        .await;
    assert_eq!(
        ledger.calls_to(Endpoint::PaymentStatus),
        fleet.contract_checks(),
        "asked about a charge every answer had refused: {:?}",
        ledger.calls
    );
    answers_again_and_delivers_charged_once(&mut fleet, &id).await;
    fleet.settle_and_check(SETTLE).await;
}

/// Every charge is applied, then times out; every status query answers
/// 503: the provider stops answering about the charge it made.
const UNANSWERED: &str = "[faults.\"payment.charge\"]\ntimeout_after_apply = 1.0\nhang_ms = 1000\n\n[faults.\"payment.status\"]\nunavailable_503 = 1.0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_charge_whose_status_query_goes_unanswered_is_parked_not_charged_again() {
    let mut fleet = Fleet::start(FleetOptions::new().profile(UNANSWERED)).await;
    let id = fleet.place(&Order::new("ord-pay-unanswered")).await;
    // A 503 to the query is the query refused, not the charge: the
    // charge's outcome is as unknown as before, so it is never sent again.
    let checks = fleet.contract_checks();
    let ledger = fleet
        .wait_ledger("two unanswered status queries", SETTLE, |l| {
            l.calls_to(Endpoint::PaymentStatus) >= checks + 2
        })
        .await;
    assert_eq!(
        ledger.calls_to(Endpoint::PaymentCharge),
        1,
        "a charge of unknown outcome sent again after a query went unanswered: {:?}",
        ledger.calls
    );
    fleet
        .wait_state(&id, &[OrderState::PaymentPending], SETTLE)
        .await;
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.calls_to(Endpoint::PaymentCharge), 1);
    assert!(
        ledger.shipments.is_empty(),
        "nothing ships on an unknown charge"
    );

    let ledger = answers_again_and_delivers_charged_once(&mut fleet, &id).await;
    assert_eq!(
        ledger.calls_to(Endpoint::PaymentCharge),
        1,
        "{:?}",
        ledger.calls
    );
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_meeting_an_unanswered_status_query_waits_for_the_charge_and_refunds_it() {
    let mut fleet = Fleet::start(FleetOptions::new().profile(UNANSWERED)).await;
    let id = fleet.place(&Order::new("ord-pay-unanswered-cancel")).await;
    let checks = fleet.contract_checks();
    fleet
        .wait_ledger("an unanswered status query", SETTLE, |l| {
            l.calls_to(Endpoint::PaymentStatus) > checks
        })
        .await;
    fleet.cancel(&Cancel::new(&id)).await;
    // The payment stage asks again with the cancel known, and again gets
    // no answer: releasing the stock now, without a refund, would keep a
    // charge for stock put back (I6). It parks the order and keeps the
    // cancel for when the charge's outcome is known.
    fleet
        .wait_for(&id, "payment_pending with the cancel kept", SETTLE, |r| {
            r.state == OrderState::PaymentPending && r.cancel_requested.is_some()
        })
        .await;
    let noted = fleet.audit(&id).await.len();
    fleet
        .wait_audit(&id, "a re-check with the cancel known", SETTLE, |entries| {
            entries.len() > noted
        })
        .await;
    let record = fleet.order(&id).await.expect("the order");
    assert_eq!(
        record.state,
        OrderState::PaymentPending,
        "{id} moved on a guess: {}",
        fleet.history(&id).await
    );
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.calls_to(Endpoint::InventoryRelease), 0);
    assert_eq!(ledger.calls_to(Endpoint::PaymentRefund), 0);

    // The provider answers again: the charge is found, refunded, and the
    // stock released.
    fleet.set_profile("").await;
    fleet
        .wait_state(&id, &[OrderState::Cancelled], SETTLE)
        .await;
    let ledger = fleet.ledger().await;
    let payments = payments_of(&ledger, &id);
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0].state, PaymentState::Refunded);
    assert_eq!(
        orderflow_testkit::reservation_states(&ledger, &id),
        [ReservationState::Released]
    );
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_whose_connection_drops_after_apply_is_confirmed_by_status_query() {
    let fleet = Fleet::start(FleetOptions::new().profile(
        "[faults.\"payment.charge\"]\nreset_after_apply = 1.0\n\n[shipping]\nfulfilment_step_ms = 100\n",
    ))
    .await;
    let id = fleet.place(&Order::new("ord-pay-reset")).await;
    fleet
        .wait_state(&id, &[OrderState::Delivered], SETTLE)
        .await;
    let ledger = fleet.ledger().await;
    assert_eq!(payments_of(&ledger, &id).len(), 1, "exactly one charge");
    assert!(
        ledger.calls_to(Endpoint::PaymentStatus) > fleet.contract_checks(),
        "{:?}",
        ledger.calls
    );
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processing_payment_waits_in_payment_pending_and_then_ships() {
    let fleet = Fleet::start(
        FleetOptions::new()
            .profile("[payment]\nprocessing_ms = 1500\n\n[shipping]\nfulfilment_step_ms = 100\n"),
    )
    .await;
    let id = fleet
        .place(&Order::new("ord-pay-processing").token("tok_processing"))
        .await;
    fleet
        .wait_state(&id, &[OrderState::PaymentPending], SETTLE)
        .await;
    assert!(
        fleet.ledger().await.shipments.is_empty(),
        "no shipment while the payment is pending"
    );
    fleet
        .wait_state(&id, &[OrderState::Delivered], SETTLE)
        .await;

    let audit = fleet.audit(&id).await;
    let moves: Vec<OrderState> = audit
        .iter()
        .filter(|e| e.from != Some(e.to))
        .map(|e| e.to)
        .collect();
    let pending = moves.iter().position(|s| *s == OrderState::PaymentPending);
    let paid = moves.iter().position(|s| *s == OrderState::Paid);
    assert!(
        matches!((pending, paid), (Some(a), Some(b)) if a < b),
        "payment_pending before paid: {moves:?}"
    );
    let ledger = fleet.ledger().await;
    let payments = payments_of(&ledger, &id);
    assert_eq!(payments.len(), 1, "re-checks never charge again");
    assert_eq!(ledger.calls_to(Endpoint::PaymentCharge), 1);
    assert_eq!(payments[0].state, PaymentState::Succeeded);
    // I4 checks the shipment came after the payment settled.
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processing_payment_that_fails_is_rejected_and_releases_the_stock() {
    let fleet =
        Fleet::start(FleetOptions::new().profile("[payment]\nprocessing_ms = 1000\n")).await;
    let id = fleet
        .place(&Order::new("ord-pay-processing-fail").token("tok_processing_fail"))
        .await;
    let record = fleet.wait_state(&id, &[OrderState::Rejected], SETTLE).await;
    assert!(record.reason.is_some());
    let ledger = fleet.ledger().await;
    let payments = payments_of(&ledger, &id);
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].state, PaymentState::Failed);
    assert_eq!(
        orderflow_testkit::reservation_states(&ledger, &id),
        [ReservationState::Released]
    );
    assert!(ledger.shipments.is_empty());
    assert_eq!(ledger.calls_to(Endpoint::PaymentRefund), 0);
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_unknown_past_the_ambiguity_window_is_escalated_without_rollback() {
    let fleet = Fleet::start(
        FleetOptions::new()
            .policy_fixture(fixtures::PAYMENT_SHORT_AMBIGUITY)
            .profile(
                "[payment]\nprocessing_ms = 600000\n\n[faults.\"payment.status\"]\nerror_500 = 1.0\n",
            ),
    )
    .await;
    let id = fleet
        .place(&Order::new("ord-pay-unresolved").token("tok_processing"))
        .await;
    let record = fleet
        .wait_state(&id, &[OrderState::Escalated], SETTLE)
        .await;
    assert_eq!(record.reason.as_deref(), Some("payment_unresolved"));
    let parked = fleet
        .wait_parked(Stage::Payment, "the escalated order", SETTLE, |p| {
            p.order_id().as_deref() == Some(id.as_str())
        })
        .await;
    assert_eq!(parked.reason(), Some("payment_unresolved"));

    let ledger = fleet.ledger().await;
    let payments = payments_of(&ledger, &id);
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].state, PaymentState::Processing);
    assert_eq!(
        orderflow_testkit::reservation_states(&ledger, &id),
        [ReservationState::Reserved]
    );
    assert_eq!(ledger.calls_to(Endpoint::PaymentRefund), 0);
    assert_eq!(ledger.calls_to(Endpoint::InventoryRelease), 0);
    assert!(ledger.shipments.is_empty());
    fleet
        .wait_events(&id, "order.escalated", SETTLE, |events| {
            events.iter().any(|e| e.routing_key == "order.escalated")
        })
        .await;
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_charge_at_a_provider_without_idempotency_or_status_is_escalated() {
    let fleet = Fleet::start(
        FleetOptions::new()
            .policy_fixture(fixtures::PAYMENT_NOT_IDEMPOTENT)
            .profile(
                "[payment]\nidempotent = false\nstatus_query = false\n\n[faults.\"payment.charge\"]\ntimeout_after_apply = 1.0\nhang_ms = 1000\n",
            ),
    )
    .await;
    let id = fleet.place(&Order::new("ord-pay-not-idempotent")).await;
    let record = fleet
        .wait_state(&id, &[OrderState::Escalated], SETTLE)
        .await;
    assert_eq!(
        record.reason.as_deref(),
        Some("payment_unknown_outcome_not_retryable")
    );
    // A wrong retry would be a message still queued, deferred or in hand:
    // count once there is none.
    fleet.wait_quiet(SETTLE).await;
    let ledger = fleet.ledger().await;
    assert_eq!(
        ledger.calls_to(Endpoint::PaymentCharge),
        1,
        "never charged again"
    );
    assert_eq!(payments_of(&ledger, &id).len(), 1);
    assert_eq!(ledger.calls_to(Endpoint::PaymentRefund), 0);
    assert_eq!(
        orderflow_testkit::reservation_states(&ledger, &id),
        [ReservationState::Reserved]
    );
    fleet
        .wait_parked(Stage::Payment, "the escalated order", SETTLE, |p| {
            p.order_id().as_deref() == Some(id.as_str())
                && p.reason() == Some("payment_unknown_outcome_not_retryable")
        })
        .await;
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_failure_learned_after_shipping_is_escalated_without_rollback() {
    let fleet =
        Fleet::start(FleetOptions::new().profile("[shipping]\nfulfilment_step_ms = 60000\n")).await;
    let id = fleet.place(&Order::new("ord-pay-after-shipping")).await;
    fleet
        .wait_state(&id, &[OrderState::ShipmentAccepted], SETTLE)
        .await;
    // The provider reverses the charge (a chargeback), outside the fleet.
    fleet.refund_on_sim(&id).await;

    let record = fleet
        .wait_state(&id, &[OrderState::Escalated], SETTLE)
        .await;
    assert_eq!(
        record.reason.as_deref(),
        Some("payment_failed_after_shipment")
    );
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.shipments.len(), 1, "the shipment stands");
    assert_eq!(
        orderflow_testkit::reservation_states(&ledger, &id),
        [ReservationState::Committed]
    );
    assert_eq!(ledger.calls_to(Endpoint::InventoryRelease), 0);
    assert_eq!(
        ledger.calls_to(Endpoint::PaymentRefund),
        1,
        "only the provider's own refund"
    );
    fleet
        .wait_events(&id, "order.escalated", SETTLE, |events| {
            events.iter().any(|e| e.routing_key == "order.escalated")
        })
        .await;
    fleet.settle_and_check(SETTLE).await;
}
