use downstream_sim::Endpoint;
use serde_json::json;

use crate::common::{TestSim, start};

#[tokio::test]
async fn same_key_same_request_replays_the_stored_outcome() {
    let sim = start("[inventory]\nstock = { \"SKU-SCARCE\" = 2 }").await;
    let first = sim.charge("p-1", "o-1", "tok_ok").await;
    let again = sim.charge("p-1", "o-1", "tok_ok").await;
    assert_eq!(first.status, 201);
    assert_eq!(again, first, "status and body are replayed");

    let declined = sim.charge("p-2", "o-2", "tok_declined").await;
    assert_eq!(sim.charge("p-2", "o-2", "tok_declined").await, declined);

    // A stored business refusal is replayed even after the cause went away.
    let holder = sim.reserve("r-1", "o-3", &[("SKU-SCARCE", 2)]).await;
    let short = sim.reserve("r-2", "o-4", &[("SKU-SCARCE", 1)]).await;
    assert_eq!(short.code(), "insufficient_stock");
    let id = holder.body["reservation_id"].as_str().unwrap();
    sim.post(
        &format!("/v1/reservations/{id}/release"),
        "rel",
        json!(null),
    )
    .await;
    assert_eq!(sim.reserve("r-2", "o-4", &[("SKU-SCARCE", 1)]).await, short);

    let ledger = sim.ledger().await;
    assert_eq!(ledger.payments.len(), 1);
    assert_eq!(ledger.reservations.len(), 1);
    assert_eq!(ledger.calls_to(Endpoint::PaymentCharge), 4);
}

#[tokio::test]
async fn same_key_other_request_is_a_mismatch() {
    let sim = start("").await;
    assert_eq!(sim.charge("p-1", "o-1", "tok_ok").await.status, 201);
    let other = sim.charge("p-1", "o-2", "tok_ok").await;
    assert_eq!((other.status, other.code()), (422, "idempotency_mismatch"));
    // Keys are per API: the same key on the shipping API is a new request.
    assert_eq!(
        sim.ship("p-1", "o-1", crate::common::address("NL"))
            .await
            .status,
        202
    );
    assert_eq!(sim.ledger().await.payments.len(), 1);
}

#[tokio::test]
async fn same_key_while_running_is_in_progress() {
    let sim = start("[faults.\"payment.charge\"]\nlatency_ms = [400, 400]").await;
    let body = TestSim::charge_body("o-1", "tok_ok");
    let first = tokio::spawn(sim.post_request("/v1/payments", "p-1", &body).send());
    // Counted, then held in its latency: the key is claimed.
    sim.wait_calls(Endpoint::PaymentCharge, 1).await;
    let second = sim.charge("p-1", "o-1", "tok_ok").await;
    assert_eq!((second.status, second.code()), (409, "request_in_progress"));

    let first = crate::common::answer(first.await.unwrap().unwrap()).await;
    assert_eq!(first.status, 201);
    assert_eq!(sim.charge("p-1", "o-1", "tok_ok").await, first);
    assert_eq!(sim.ledger().await.payments.len(), 1);
}

#[tokio::test]
async fn a_provider_without_idempotency_charges_twice() {
    let sim = start("[payment]\nidempotent = false").await;
    let first = sim.charge("p-1", "o-1", "tok_ok").await;
    let second = sim.charge("p-1", "o-1", "tok_ok").await;
    assert_eq!((first.status, second.status), (201, 201));
    assert_ne!(first.body["payment_id"], second.body["payment_id"]);

    let ledger = sim.ledger().await;
    assert_eq!(ledger.payments.len(), 2);
    assert!(
        ledger
            .payments
            .iter()
            .all(|p| p.key == "p-1" && p.order_id == "o-1")
    );
    let latest = sim.get("/v1/payments/by-key/p-1").await;
    assert_eq!(latest.body["payment_id"], second.body["payment_id"]);
}

#[tokio::test]
async fn injected_failures_are_not_stored_so_a_retry_executes() {
    let sim = start("[faults.\"payment.charge\"]\nerror_500 = 1.0").await;
    let failed = sim.charge("p-1", "o-1", "tok_ok").await;
    assert_eq!((failed.status, failed.code()), (500, "internal_error"));
    assert!(sim.ledger().await.payments.is_empty());

    assert_eq!(sim.put_faults(json!({})).await.status, 200);
    let retried = sim.charge("p-1", "o-1", "tok_ok").await;
    assert_eq!(retried.status, 201, "the key stayed free: {retried:?}");
    assert_eq!(sim.ledger().await.payments.len(), 1);
}
