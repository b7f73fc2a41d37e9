//! The door, tried adversarially (issue 14, items 2, 11 and 12): a cancel
//! published right behind its order, a replacement order naming another
//! customer's order, and customer events arriving out of order.

use orderflow_e2e::{
    Cancel, Fleet, FleetOptions, Ledger, Order, OrderState, PaymentState, ReservationState, Stage,
    WorkerKind,
};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(60);

fn reservation_states(ledger: &Ledger, id: &str) -> Vec<ReservationState> {
    ledger
        .reservations
        .iter()
        .filter(|r| r.order_id == id)
        .map(|r| r.state)
        .collect()
}

/// Item 2: 200 orders, each followed at once by its `order.cancel` on the
/// same channel, at an inventory concurrency of 16 on two replicas. The
/// cancel wins every time: however its admission and the order's
/// interleave, the order ends cancelled, nothing stays charged, nothing
/// ships, and no cancel is parked as `cancel_unknown_order`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_right_behind_its_order_always_wins() {
    let options = FleetOptions {
        concurrency: 16,
        ..FleetOptions::new()
    }
    .replicas(WorkerKind::Inventory, 2)
    .profile("[shipping]\nfulfilment_step_ms = 100\n");
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
