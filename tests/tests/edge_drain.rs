//! A SIGTERM'd stage worker under load exits within its drain bound — the
//! shutdown grace it is configured with plus its bounded closing steps —
//! however long its in-flight deliveries would still take, and loses none
//! of them: what it abandons at the end of the grace goes back to the
//! queue, and the next worker finishes it.

use orderflow_testkit::{Endpoint, Fleet, FleetOptions, Order, WorkerKind, tally};
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sigtermed_mid_charges_exits_within_its_drain_bound_and_loses_nothing() {
    // Every charge takes 400–450 ms (under the fast policy's 500 ms client
    // timeout): a charge under way at the SIGTERM outlasts a 200 ms grace.
    let grace = Duration::from_millis(200);
    let fleet = Fleet::start(
        FleetOptions::new()
            .shutdown_grace(grace)
            .profile("[faults.\"payment.charge\"]\nlatency_ms = [400, 450]\n"),
    )
    .await;
    let orders: Vec<Order> = (0..40)
        .map(|n| Order::new(&format!("ord-drain-{n}")))
        .collect();
    fleet.place_all(&orders).await;
    // Under load: the payment worker has charges under way.
    fleet
        .wait_ledger("payment charges", SETTLE, |l| {
            l.calls_to(Endpoint::PaymentCharge) >= 8
        })
        .await;

    let bound = fleet.drain_bound();
    let terminated = Instant::now();
    let status = fleet
        .terminate_worker(WorkerKind::Payment, 0, bound)
        .unwrap_or_else(|| panic!("the payment worker still runs {bound:?} after SIGTERM"));
    let took = terminated.elapsed();
    eprintln!("drained in {took:?} (grace {grace:?}, bound {bound:?})");
    assert!(status.success(), "a drained worker exits 0: {status}");

    fleet.start_worker(WorkerKind::Payment, 0);
    let records = fleet.settle_and_check(SETTLE).await;
    eprintln!("settled: {}", tally(&records));
}
