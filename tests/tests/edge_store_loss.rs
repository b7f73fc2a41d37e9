//! Redis loses writes it acknowledged (an asynchronous replica promoted, a
//! host crash under `appendfsync everysec`): the fleet's private Redis is
//! restarted on a copy of its files taken about a second earlier, in the
//! middle of a run under faults. Whatever the fleet can no longer account
//! for must end escalated with a reason a person can act on; nothing may be
//! charged twice, shipped twice or shipped unpaid (docs/reliability.md).

use orderflow_testkit::orders::mixed;
use orderflow_testkit::{Endpoint, Fleet, FleetOptions, OrderState, WorkerKind, tally};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(90);

/// Escalations a person can act on after a loss: the store says what it
/// lost (`store_lost_writes`, where a message about the order outlived the
/// loss), an order sat in a state past its deadline with nothing in flight
/// (`stuck`: the loss took its last move and no message named it), or a
/// stage's own reason.
const ACTIONABLE: [&str; 4] = [
    "store_lost_writes",
    "stuck",
    "payment_unresolved",
    "fulfilment_unresolved",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_a_second_of_acknowledged_writes_charges_and_ships_nothing_twice() {
    let fleet = Fleet::start(
        FleetOptions::new()
            .profile_fixture("mixed-faults")
            .replicas(WorkerKind::Payment, 2)
            .replicas(WorkerKind::Shipping, 2)
            .private_redis(),
    )
    .await;
    let orders = mixed("ord-loss", 160);
    let (first, second) = orders.split_at(80);
    fleet.place_all(first).await;
    fleet
        .wait_ledger("charges before the snapshot", SETTLE, |l| {
            l.calls_to(Endpoint::PaymentCharge) >= 20
        })
        .await;
    let snapshot = fleet.snapshot_redis();
    let before = fleet.ledger().await;
    fleet.place_all(second).await;
    // Work the fleet did after the copy, which the restore takes away
    // from the store but not from the providers.
    fleet
        .wait_ledger("charges and shipments after the snapshot", SETTLE, |l| {
            l.calls_to(Endpoint::PaymentCharge) >= before.calls_to(Endpoint::PaymentCharge) + 20
                && l.calls_to(Endpoint::ShippingCreate)
                    >= before.calls_to(Endpoint::ShippingCreate) + 10
        })
        .await;
    fleet.restore_redis(&snapshot).await;

    let records = fleet.settle_and_check(SETTLE).await;
    eprintln!("settled: {}", tally(&records));
    for record in &records {
        if record.state == OrderState::Escalated {
            let reason = record.reason.as_deref().unwrap_or("");
            assert!(
                ACTIONABLE.contains(&reason),
                "{} escalated as {reason:?}, not a reason a person can act on: {}",
                record.order_id,
                fleet.history(record.order_id.as_str()).await
            );
        }
    }
    // The loss mattered: orders the store had forgotten moving were
    // noticed and escalated as such.
    assert!(
        records
            .iter()
            .any(|r| r.reason.as_deref() == Some("store_lost_writes")),
        "no order was found behind its messages: {}",
        tally(&records)
    );
}
