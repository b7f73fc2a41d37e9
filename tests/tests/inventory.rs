//! The inventory rows of docs/design.md §4: insufficient stock fails fast; a
//! timeout is resolved by status query or a deferred retry with the same
//! key; 503/429 are retried within budget or deferred, or fail fast when
//! the policy says so; a deferred retry that finds the order cancelled
//! releases the reservation.

use orderflow_testkit::{
    Cancel, Endpoint, Fleet, FleetOptions, Order, OrderState, ReservationState, fixtures,
};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(25);

fn reservations_of<'a>(
    ledger: &'a orderflow_testkit::Ledger,
    id: &str,
) -> Vec<&'a orderflow_testkit::Reservation> {
    ledger
        .reservations
        .iter()
        .filter(|r| r.order_id == id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_stock_is_rejected_at_once_without_a_charge() {
    let fleet =
        Fleet::start(FleetOptions::new().profile("[inventory]\nstock = { \"SKU-SCARCE\" = 0 }\n"))
            .await;
    let scarce = fleet
        .place(&Order::new("ord-scarce").sku("SKU-SCARCE", 1))
        .await;
    let plenty = fleet.place(&Order::new("ord-plenty")).await;

    let record = fleet
        .wait_state(&scarce, &[OrderState::Rejected], SETTLE)
        .await;
    assert_eq!(record.reason.as_deref(), Some("insufficient_stock"));
    fleet
        .wait_state(&plenty, &[OrderState::Delivered], SETTLE)
        .await;

    let ledger = fleet.ledger().await;
    assert!(reservations_of(&ledger, &scarce).is_empty());
    assert!(ledger.payments.iter().all(|p| p.order_id != scarce));
    // Deterministic: never retried. One call per order.
    assert_eq!(ledger.calls_to(Endpoint::InventoryReserve), 2);
    assert_eq!(ledger.calls_to(Endpoint::PaymentCharge), 1);
    fleet
        .wait_events(&scarce, "order.rejected", SETTLE, |events| {
            events.iter().any(|e| e.routing_key == "order.rejected")
        })
        .await;
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_timeout_after_apply_is_resolved_by_status_query() {
    let fleet = Fleet::start(FleetOptions::new().profile(
        "[faults.\"inventory.reserve\"]\ntimeout_after_apply = 1.0\nhang_ms = 1000\n\n[shipping]\nfulfilment_step_ms = 100\n",
    ))
    .await;
    let id = fleet.place(&Order::new("ord-inv-timeout-after")).await;
    fleet
        .wait_state(&id, &[OrderState::Delivered], SETTLE)
        .await;

    let ledger = fleet.ledger().await;
    let reservations = reservations_of(&ledger, &id);
    assert_eq!(
        reservations.len(),
        1,
        "exactly one reservation: {reservations:?}"
    );
    assert_eq!(reservations[0].state, ReservationState::Committed);
    assert!(
        ledger.calls_to(Endpoint::InventoryStatus) > fleet.contract_checks(),
        "the unknown outcome was asked about: {:?}",
        ledger.calls
    );
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_timeout_before_apply_is_retried_with_the_same_key() {
    let mut fleet =
        Fleet::start(FleetOptions::new().profile(
            "[faults.\"inventory.reserve\"]\ntimeout_before_apply = 1.0\nhang_ms = 1000\n",
        ))
        .await;
    let id = fleet.place(&Order::new("ord-inv-timeout-before")).await;
    fleet
        .wait_ledger("a timed-out reserve call", SETTLE, |l| {
            l.calls_to(Endpoint::InventoryReserve) >= 1
        })
        .await;
    // Nothing was reserved; the downstream recovers.
    assert!(fleet.ledger().await.reservations.is_empty());
    fleet
        .set_profile("[shipping]\nfulfilment_step_ms = 100\n")
        .await;
    fleet
        .wait_state(&id, &[OrderState::Delivered], SETTLE)
        .await;

    let ledger = fleet.ledger().await;
    let reservations = reservations_of(&ledger, &id);
    assert_eq!(
        reservations.len(),
        1,
        "exactly one reservation: {reservations:?}"
    );
    assert!(
        ledger.calls_to(Endpoint::InventoryReserve) >= 2,
        "the reservation was sent again: {:?}",
        ledger.calls
    );
    assert!(
        reservations[0].key.contains(&id),
        "a deterministic key naming the order: {}",
        reservations[0].key
    );
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_and_rate_limited_inventory_is_retried_until_it_answers() {
    let mut fleet = Fleet::start(
        FleetOptions::new().profile("[faults.\"inventory.reserve\"]\nunavailable_503 = 1.0\n"),
    )
    .await;
    let id = fleet.place(&Order::new("ord-inv-overloaded")).await;
    fleet
        .wait_ledger("two refused reserve calls", SETTLE, |l| {
            l.calls_to(Endpoint::InventoryReserve) >= 2
        })
        .await;
    fleet
        .set_profile(
            "[faults.\"inventory.reserve\"]\nrate_limited_429 = 1.0\nretry_after_ms = 300\n",
        )
        .await;
    // Calls counted from here on were answered 429 with Retry-After.
    let before = fleet.ledger().await.calls_to(Endpoint::InventoryReserve);
    fleet
        .wait_ledger("a rate-limited reserve call", SETTLE, |l| {
            l.calls_to(Endpoint::InventoryReserve) > before
        })
        .await;
    let first = std::time::Instant::now();
    fleet
        .wait_ledger("a reserve call after the rate limit", SETTLE, |l| {
            l.calls_to(Endpoint::InventoryReserve) > before + 1
        })
        .await;
    // Retry-After said 300 ms (1 s in the header); allow for polling.
    assert!(
        first.elapsed() >= Duration::from_millis(200),
        "the next call came {:?} after a 429 asking for 300 ms",
        first.elapsed()
    );
    fleet
        .set_profile("[shipping]\nfulfilment_step_ms = 100\n")
        .await;
    let record = fleet
        .wait_state(&id, &[OrderState::Delivered], SETTLE)
        .await;
    assert_eq!(record.state, OrderState::Delivered);

    let ledger = fleet.ledger().await;
    assert_eq!(reservations_of(&ledger, &id).len(), 1);
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_inventory_fails_fast_when_the_policy_says_so() {
    let fleet = Fleet::start(
        FleetOptions::new()
            .policy_fixture(fixtures::INVENTORY_FAIL_FAST)
            .profile("[faults.\"inventory.reserve\"]\nunavailable_503 = 1.0\n"),
    )
    .await;
    let id = fleet.place(&Order::new("ord-inv-fail-fast")).await;
    let record = fleet.wait_state(&id, &[OrderState::Rejected], SETTLE).await;
    assert_eq!(
        record.reason.as_deref(),
        Some("inventory_unavailable_retry_later")
    );
    let ledger = fleet.ledger().await;
    assert!(ledger.reservations.is_empty());
    assert_eq!(ledger.calls_to(Endpoint::PaymentCharge), 0);
    assert!(
        ledger.calls_to(Endpoint::InventoryReserve) <= 3,
        "retries stay within the budget: {:?}",
        ledger.calls
    );
    fleet
        .wait_events(&id, "order.rejected", SETTLE, |events| {
            events.iter().any(|e| e.routing_key == "order.rejected")
        })
        .await;
    fleet.settle_and_check(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_reservation_that_finds_the_order_cancelled_releases_it() {
    // The reservation is made but its answer is lost, and the status query
    // fails too: the outcome stays unknown and the order waits.
    let mut fleet = Fleet::start(FleetOptions::new().profile(
        "[faults.\"inventory.reserve\"]\ntimeout_after_apply = 1.0\nhang_ms = 1000\n\n[faults.\"inventory.status\"]\nerror_500 = 1.0\n",
    ))
    .await;
    let id = fleet.place(&Order::new("ord-inv-cancelled")).await;
    fleet
        .wait_state(&id, &[OrderState::InventoryPending], SETTLE)
        .await;
    fleet.cancel(&Cancel::new(&id)).await;
    // Give the cancellation time to be recorded before the outcome is known.
    fleet
        .wait_for(&id, "marked for cancellation", SETTLE, |r| {
            r.cancel_requested.is_some() || r.state == OrderState::Cancelled
        })
        .await;
    fleet.set_profile("").await;

    let record = fleet
        .wait_state(&id, &[OrderState::Cancelled], SETTLE)
        .await;
    assert!(record.reason.is_some());
    let ledger = fleet.ledger().await;
    let reservations = reservations_of(&ledger, &id);
    assert_eq!(reservations.len(), 1, "{reservations:?}");
    assert_eq!(reservations[0].state, ReservationState::Released);
    assert_eq!(ledger.calls_to(Endpoint::PaymentCharge), 0);
    fleet.settle_and_check(SETTLE).await;
}
