//! The happy path (docs/design.md §4: inventory `reserved`, payment
//! `authorised`, shipping `accepted`, the reconciler to `delivered`): every
//! stage once, the reservation committed, the customer told each step.

use orderflow_testkit::{
    Endpoint, Fleet, FleetOptions, Order, OrderState, PaymentState, ReservationState,
    ShipmentState, WorkerKind,
};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_goes_from_reservation_to_delivery() {
    let fleet =
        Fleet::start(FleetOptions::new().profile("[shipping]\nfulfilment_step_ms = 200\n")).await;
    let order = Order::new("ord-happy-1").line("SKU-2", 3, 999);
    let id = fleet.place(&order).await;

    let record = fleet
        .wait_state(&id, &[OrderState::Delivered], SETTLE)
        .await;
    assert_eq!(record.reason, None);

    let audit = fleet.audit(&id).await;
    let moves: Vec<OrderState> = audit
        .iter()
        .filter(|e| e.from != Some(e.to))
        .map(|e| e.to)
        .collect();
    assert_eq!(
        moves,
        [
            OrderState::Received,
            OrderState::Reserved,
            OrderState::Paid,
            OrderState::ShipmentAccepted,
            OrderState::Delivered
        ],
        "{}",
        fleet.history(&id).await
    );

    let ledger = fleet.ledger().await;
    let reservations: Vec<_> = ledger
        .reservations
        .iter()
        .filter(|r| r.order_id == id)
        .collect();
    assert_eq!(reservations.len(), 1);
    assert_eq!(reservations[0].state, ReservationState::Committed);
    assert_eq!(reservations[0].items.len(), 2);
    let payments: Vec<_> = ledger
        .payments
        .iter()
        .filter(|p| p.order_id == id)
        .collect();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].state, PaymentState::Succeeded);
    assert_eq!(payments[0].amount, order.total());
    assert_eq!(payments[0].currency, "EUR");
    let shipments: Vec<_> = ledger
        .shipments
        .iter()
        .filter(|s| s.order_id == id)
        .collect();
    assert_eq!(shipments.len(), 1);
    assert_eq!(shipments[0].state, ShipmentState::Delivered);
    assert_eq!(ledger.calls_to(Endpoint::PaymentCharge), 1);
    assert_eq!(ledger.calls_to(Endpoint::InventoryRelease), 0);
    assert_eq!(ledger.calls_to(Endpoint::PaymentRefund), 0);

    // The store names what each downstream made.
    assert_eq!(
        record.downstream_ids.len(),
        3,
        "{:?}",
        record.downstream_ids
    );
    assert!(
        record.downstream_ids.values().any(|v| v == &payments[0].id),
        "{:?}",
        record.downstream_ids
    );

    let events = fleet
        .wait_events(&id, "order.delivered event", SETTLE, |events| {
            events.iter().any(|e| e.routing_key == "order.delivered")
        })
        .await;
    let keys: Vec<&str> = events.iter().map(|e| e.routing_key.as_str()).collect();
    for expected in [
        "order.reserved",
        "order.paid",
        "order.shipment_accepted",
        "order.delivered",
    ] {
        assert!(keys.contains(&expected), "no {expected} in {keys:?}");
    }
    assert!(
        keys.iter().any(|k| k.starts_with("fulfilment.")),
        "no fulfilment.<step> event in {keys:?}"
    );
    let position = |key: &str| keys.iter().position(|k| *k == key).unwrap();
    assert!(position("order.reserved") < position("order.paid"));
    assert!(position("order.paid") < position("order.shipment_accepted"));
    let first_step = keys
        .iter()
        .position(|k| k.starts_with("fulfilment."))
        .unwrap();
    assert!(position("order.shipment_accepted") < first_step, "{keys:?}");
    assert!(events.iter().all(|e| e.order_id == id));

    fleet.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_on_replicas_is_delivered_once_each() {
    let fleet = Fleet::start(
        FleetOptions::new()
            .profile("[shipping]\nfulfilment_step_ms = 100\n")
            .replicas(WorkerKind::Inventory, 2)
            .replicas(WorkerKind::Payment, 2)
            .replicas(WorkerKind::Shipping, 2)
            .replicas(WorkerKind::Reconciler, 2),
    )
    .await;
    let orders: Vec<Order> = (0..40)
        .map(|i| Order::new(&format!("ord-batch-{i}")).customer(&format!("cust-{i}")))
        .collect();
    let ids = fleet.place_all(&orders).await;
    let records = fleet.wait_settled(&ids, SETTLE).await;
    for record in &records {
        assert_eq!(
            record.state,
            OrderState::Delivered,
            "{}: {}",
            record.order_id,
            fleet.history(record.order_id.as_str()).await
        );
    }
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.payments.len(), ids.len());
    assert_eq!(ledger.shipments.len(), ids.len());
    assert_eq!(ledger.reservations.len(), ids.len());
    fleet.assert_invariants().await;
}
