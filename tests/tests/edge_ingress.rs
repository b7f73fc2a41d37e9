//! The door, tried adversarially (docs/reliability.md, items 2, 11 and 12): a cancel
//! published right behind its order, a replacement order naming another
//! customer's order, and customer events arriving out of order.

use orderflow_broker::names::ORDER_PLACED;
use orderflow_core::message::OrderId;
use orderflow_testkit::{
    Cancel, Endpoint, Fleet, FleetOptions, Order, OrderState, PaymentState, ReservationState,
    Stage, WorkerKind, reservation_states,
};
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(60);

/// Item 2: 200 orders, each followed at once by its `order.cancel` on the
/// same channel, at an inventory concurrency of 16 on two replicas. The
/// cancel wins every time: however its admission and the order's
/// interleave, the order ends cancelled, nothing stays charged, nothing
/// ships, and no cancel is parked as `cancel_unknown_order`.
///
/// A cancel admitted after its order was paid is refunded and released;
/// one admitted while the carrier is booking the parcel blocks the order
/// (`cancel_after_shipment`). A cancel can be admitted that late only when
/// it waits in the inventory queue behind other orders' work longer than
/// its own order takes through payment and shipping: with the simulator's
/// zero latency and a loaded 2-core machine that happened to about one
/// order in 200 — hence a payment provider's usual latency here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_right_behind_its_order_always_wins() {
    let options = FleetOptions {
        concurrency: 16,
        ..FleetOptions::new()
    }
    .replicas(WorkerKind::Inventory, 2)
    // A payment provider's usual latency: without it the simulator lets an
    // order through all three stages in the few ms a cancel may wait in
    // the inventory queue behind other orders' work (see the note below).
    .profile(
        "[shipping]\nfulfilment_step_ms = 100\n\
         [faults.\"payment.charge\"]\nlatency_ms = [150, 250]\n",
    );
    let fleet = Fleet::start(options).await;
    let ids: Vec<String> = (0..200).map(|i| format!("ord-race-{i:03}")).collect();
    for id in &ids {
        fleet.place(&Order::new(id)).await;
        fleet.cancel(&Cancel::new(id)).await;
    }

    let records = fleet.wait_settled(&ids, SETTLE).await;
    let ledger = fleet.ledger().await;
    let mut lost = Vec::new();
    for record in &records {
        let id = record.order_id.as_str();
        let charged = ledger
            .payments
            .iter()
            .any(|p| p.order_id == id && p.state == PaymentState::Succeeded);
        let shipped = ledger.shipments.iter().any(|s| s.order_id == id);
        let held = reservation_states(&ledger, id)
            .iter()
            .any(|s| *s != ReservationState::Released);
        if record.state != OrderState::Cancelled || charged || shipped || held {
            lost.push(format!(
                "{id}: {} ({:?}) charged={charged} shipped={shipped} stock held={held}; {}",
                record.state,
                record.reason,
                fleet.history(id).await
            ));
        }
    }
    let unknown: Vec<String> = fleet
        .exceptions(Stage::Inventory)
        .await
        .iter()
        .filter(|p| p.reason() == Some("cancel_unknown_order"))
        .filter_map(|p| p.order_id())
        .collect();
    assert!(
        lost.is_empty() && unknown.is_empty(),
        "{} of 200 cancels lost to their order:\n{}\nparked as cancel_unknown_order: {unknown:?}",
        lost.len(),
        lost.join("\n")
    );
    fleet.settle_and_check(SETTLE).await;
}

/// Item 11: customer B's order names customer A's order in `supersedes`.
/// A's order waits in `reserved` (the payment provider is down), where a
/// replacement of A's own would cancel it. B's message is parked as it
/// came with `supersede_other_customer`, B's order is not created, and A's
/// goes on untouched: reserved, charged, shipped and delivered once the
/// provider answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_naming_another_customers_order_is_parked_and_cancels_nothing() {
    const QUICK: &str = "[shipping]\nfulfilment_step_ms = 100\n";
    let mut fleet = Fleet::start(FleetOptions::new().profile(&format!(
        "{QUICK}[faults.\"payment.charge\"]\nunavailable_503 = 1.0\n"
    )))
    .await;
    let a = fleet
        .place(&Order::new("ord-of-cust-a").customer("cust-a"))
        .await;
    fleet.wait_state(&a, &[OrderState::Reserved], SETTLE).await;

    // Published without tracking it as placed: it must not become an order.
    let b = Order::new("ord-of-cust-b")
        .customer("cust-b")
        .supersedes(&a)
        .to_json();
    let body = serde_json::to_vec(&b).unwrap();
    fleet
        .publish_raw(
            ORDER_PLACED,
            body.clone(),
            Some("placed.ord-of-cust-b".into()),
        )
        .await;
    let parked = fleet
        .wait_parked(
            Stage::Inventory,
            "the replacement of another customer's order",
            SETTLE,
            |p| p.order_id().as_deref() == Some("ord-of-cust-b"),
        )
        .await;
    assert_eq!(
        parked.reason(),
        Some("supersede_other_customer"),
        "{parked:?}"
    );
    assert_eq!(parked.body, body, "parked as it came");
    assert!(
        fleet.order("ord-of-cust-b").await.is_none(),
        "the replacement was not created"
    );
    let untouched = fleet.expect_order(&a).await;
    assert_eq!(
        (untouched.state, untouched.cancel_requested.as_deref()),
        (OrderState::Reserved, None),
        "{}",
        fleet.history(&a).await
    );

    fleet.set_profile(QUICK).await;
    fleet.wait_state(&a, &[OrderState::Delivered], SETTLE).await;
    let ledger = fleet.ledger().await;
    assert_eq!(
        reservation_states(&ledger, &a),
        [ReservationState::Committed]
    );
    let payments: Vec<PaymentState> = ledger
        .payments
        .iter()
        .filter(|p| p.order_id == a)
        .map(|p| p.state)
        .collect();
    assert_eq!(payments, [PaymentState::Succeeded]);
    assert_eq!(
        ledger.shipments.iter().filter(|s| s.order_id == a).count(),
        1
    );
    assert!(
        ledger.reservations.iter().all(|r| r.order_id == a),
        "nothing was reserved for the replacement: {ledger:#?}"
    );
    fleet.settle_and_check(SETTLE).await;
}

/// Item 12: every customer event carries the order's version, so a
/// subscriber can drop a stale one. An order reserved, then cancelled (the
/// payment provider is down, so it waits in `reserved`): its events, put
/// in version order, are received → reserved → cancelled with strictly
/// increasing versions, each the version of the audited move into that
/// state, and the highest is `order.cancelled` at the order's final
/// version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_customer_event_carries_the_orders_version() {
    let fleet = Fleet::start(
        FleetOptions::new().profile("[faults.\"payment.charge\"]\nunavailable_503 = 1.0\n"),
    )
    .await;
    let id = fleet.place(&Order::new("ord-versioned")).await;
    fleet.wait_state(&id, &[OrderState::Reserved], SETTLE).await;
    fleet.cancel(&Cancel::new(&id)).await;
    let record = fleet
        .wait_state(&id, &[OrderState::Cancelled], SETTLE)
        .await;

    let events = fleet
        .wait_events(&id, "order.cancelled", SETTLE, |events| {
            events.iter().any(|e| e.routing_key == "order.cancelled")
        })
        .await;
    let mut versioned: Vec<(u64, String)> = events
        .iter()
        .map(|e| {
            let version = e
                .version
                .unwrap_or_else(|| panic!("an event without the order's version: {e:?}"));
            (version, e.routing_key.clone())
        })
        .collect();
    versioned.sort();
    let keys: Vec<&str> = versioned.iter().map(|(_, key)| key.as_str()).collect();
    assert_eq!(
        keys,
        ["order.received", "order.reserved", "order.cancelled"],
        "{versioned:?}"
    );
    assert!(
        versioned.windows(2).all(|w| w[0].0 < w[1].0),
        "versions strictly increase: {versioned:?}"
    );
    assert_eq!(
        versioned.last().map(|(v, _)| *v),
        Some(record.version),
        "the highest version is the order's final one"
    );
    // Each event's version is that of the audited move into its state.
    let audit = fleet.audit(&id).await;
    for (version, key) in &versioned {
        let state = key.trim_start_matches("order.");
        assert!(
            audit
                .iter()
                .any(|e| e.from != Some(e.to) && e.to.as_str() == state && e.version == *version),
            "{key} at v{version} is not a move in the audit: {}",
            fleet.history(&id).await
        );
    }
    fleet.settle_and_check(SETTLE).await;
}

/// Item 2, the cancel first: an `order.cancel` for an order not known yet
/// is kept for its id (a positive signal in the store), and the order that
/// then arrives is created with the request and cancelled before anything
/// is reserved: no call to the inventory API at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_before_its_order_is_applied_when_the_order_arrives() {
    let fleet = Fleet::start(FleetOptions::new()).await;
    let id = "ord-cancelled-first";
    fleet
        .cancel(&Cancel::new(id).reason("typo in the order"))
        .await;
    let order_id = OrderId::parse(id).unwrap();
    let deadline = Instant::now() + SETTLE;
    while fleet
        .store()
        .kept_cancel(&order_id)
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the cancel was not kept for {id}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An operator looking for the order learns the fleet holds its cancel.
    let shown = fleet.orderctl(&["order", "show", id]);
    let stderr = String::from_utf8_lossy(&shown.stderr);
    assert!(
        !shown.status.success()
            && stderr.contains("a cancel for it is kept since")
            && stderr.contains("typo in the order"),
        "order show of an order with a kept cancel: {stderr}"
    );

    fleet.place(&Order::new(id)).await;
    let record = fleet.wait_state(id, &[OrderState::Cancelled], SETTLE).await;
    assert_eq!(
        record.reason.as_deref(),
        Some("cancelled: typo in the order")
    );
    let audit = fleet.audit(id).await;
    let steps: Vec<(u64, &str)> = audit
        .iter()
        .map(|e| (e.version, e.event.as_str()))
        .collect();
    assert_eq!(
        steps[..2],
        [(1, "order.created"), (1, "order.cancel_requested")],
        "created with the kept request: {}",
        fleet.history(id).await
    );
    assert!(
        fleet
            .store()
            .kept_cancel(&order_id)
            .await
            .unwrap()
            .is_none()
    );
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.calls_to(Endpoint::InventoryReserve), 0);
    assert!(ledger.payments.is_empty() && ledger.shipments.is_empty());
    fleet
        .wait_events(id, "order.cancelled", SETTLE, |events| {
            events.iter().any(|e| e.routing_key == "order.cancelled")
        })
        .await;
    fleet.settle_and_check(SETTLE).await;
}

/// Item 2, the cancel that never meets its order: kept while it may still
/// (`exceptions.replay_window`, 2 s here), then parked by the reconciler
/// as it came, as `cancel_unknown_order`, saying how long it waited — not
/// lost silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_whose_order_never_arrives_is_parked_after_the_replay_window() {
    let mut options = FleetOptions::new();
    options
        .policy
        .push_str("\n[exceptions]\nreplay_window = \"2s\"\n");
    let fleet = Fleet::start(options).await;
    let cancel = Cancel::new("ord-never-placed");
    fleet.cancel(&cancel).await;

    let parked = fleet
        .wait_parked(Stage::Inventory, "the unmet cancel", SETTLE, |p| {
            p.order_id().as_deref() == Some("ord-never-placed")
        })
        .await;
    assert_eq!(parked.reason(), Some("cancel_unknown_order"), "{parked:?}");
    assert_eq!(parked.body, serde_json::to_vec(&cancel.to_json()).unwrap());
    let detail = parked.meta.last_error.clone().unwrap_or_default();
    assert!(detail.contains("exceptions.replay_window"), "{detail}");
    let order_id = OrderId::parse("ord-never-placed").unwrap();
    assert!(
        fleet
            .store()
            .kept_cancel(&order_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(fleet.order("ord-never-placed").await.is_none());
    fleet.settle_and_check(SETTLE).await;
}
