use std::time::{Duration, Instant};

use downstream_sim::Endpoint;
use serde_json::json;

use crate::common::{TestSim, answer, items, start};

fn charge_faults(faults: &str) -> String {
    format!("[faults.\"payment.charge\"]\n{faults}")
}

/// Sends a charge with a client that gives up after 150 ms.
async fn impatient_charge(sim: &TestSim, key: &str) -> reqwest::Error {
    let body = TestSim::charge_body("o-1", "tok_ok");
    sim.post_request("/v1/payments", key, &body)
        .timeout(Duration::from_millis(150))
        .send()
        .await
        .expect_err("the response is held back")
}

#[tokio::test]
async fn timeout_after_apply_hides_an_applied_charge() {
    let sim = start(&charge_faults("timeout_after_apply = 1.0\nhang_ms = 400")).await;
    let err = impatient_charge(&sim, "p-1").await;
    assert!(err.is_timeout(), "{err:?}");
    let ledger = sim.ledger().await;
    assert_eq!(ledger.payments.len(), 1, "the charge happened");
    let status = sim.get("/v1/payments/by-key/p-1").await;
    assert_eq!(
        (status.status, status.body["status"].as_str()),
        (200, Some("succeeded"))
    );

    // A patient client gets the real outcome once the hang is over.
    let started = Instant::now();
    let late = sim.charge("p-2", "o-2", "tok_ok").await;
    assert_eq!(late.status, 201);
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn timeout_before_apply_hides_that_nothing_happened() {
    let sim = start(&charge_faults("timeout_before_apply = 1.0\nhang_ms = 300")).await;
    let err = impatient_charge(&sim, "p-1").await;
    assert!(err.is_timeout(), "{err:?}");
    assert!(sim.ledger().await.payments.is_empty());
    assert_eq!(sim.get("/v1/payments/by-key/p-1").await.status, 404);

    let late = sim.charge("p-2", "o-2", "tok_ok").await;
    assert_eq!((late.status, late.code()), (504, "timeout"));
    assert!(sim.ledger().await.payments.is_empty());
}

#[tokio::test]
async fn error_500_and_503_apply_nothing() {
    let sim = start(
        "[faults.\"payment.charge\"]\nerror_500 = 1.0\n[faults.\"shipping.create\"]\nunavailable_503 = 1.0",
    )
    .await;
    let failed = sim.charge("p-1", "o-1", "tok_ok").await;
    assert_eq!((failed.status, failed.code()), (500, "internal_error"));
    let unavailable = sim.ship("s-1", "o-1", crate::common::address("NL")).await;
    assert_eq!(
        (unavailable.status, unavailable.code()),
        (503, "unavailable")
    );
    let ledger = sim.ledger().await;
    assert!(ledger.payments.is_empty() && ledger.shipments.is_empty());
    assert_eq!(ledger.calls_to(Endpoint::ShippingCreate), 1);
}

#[tokio::test]
async fn rate_limited_429_says_when_to_retry() {
    let sim = start(&charge_faults(
        "rate_limited_429 = 1.0\nretry_after_ms = 1500",
    ))
    .await;
    let body = TestSim::charge_body("o-1", "tok_ok");
    let response = sim
        .post_request("/v1/payments", "p-1", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["retry-after"],
        "2",
        "whole seconds, rounded up"
    );
    let limited = answer(response).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.code(), "rate_limited");
    assert_eq!(limited.body["retry_after_ms"], 1500);
    assert!(sim.ledger().await.payments.is_empty());
}

#[tokio::test]
async fn reset_after_apply_breaks_the_connection_after_charging() {
    let sim = start(&charge_faults("reset_after_apply = 1.0")).await;
    let body = TestSim::charge_body("o-1", "tok_ok");
    let outcome = sim.post_request("/v1/payments", "p-1", &body).send().await;
    let err = outcome.expect_err("a broken connection, not a response");
    assert!(!err.is_timeout(), "{err:?}");
    let ledger = sim.ledger().await;
    assert_eq!(ledger.payments.len(), 1, "the charge happened");
    assert_eq!(ledger.payments[0].key, "p-1");
}

#[tokio::test]
async fn latency_delays_the_response() {
    let sim = start("[faults.\"inventory.reserve\"]\nlatency_ms = [150, 200]").await;
    let started = Instant::now();
    let reserved = sim.reserve("r-1", "o-1", &[("SKU-1", 1)]).await;
    let elapsed = started.elapsed();
    assert_eq!(reserved.status, 201);
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
}

#[tokio::test]
async fn latency_on_one_endpoint_leaves_the_others_alone() {
    let sim = start("[faults.\"inventory.reserve\"]\nlatency_ms = [60000, 60000]").await;
    let body = json!({ "order_id": "o-1", "items": items(&[("SKU-1", 1)]) });
    let held = tokio::spawn(sim.post_request("/v1/reservations", "r-1", &body).send());
    // Counted first, then held back: the reserve is in its latency.
    sim.wait_calls(Endpoint::InventoryReserve, 1).await;
    // Another endpoint answers while the reserve is still held back.
    assert_eq!(sim.get("/v1/reservations/by-key/r-2").await.status, 404);
    assert!(!held.is_finished(), "the reserve is still held back");
    held.abort();
}

#[tokio::test]
async fn requests_beyond_capacity_get_503() {
    let sim =
        start("[payment]\ncapacity = 2\n[faults.\"payment.charge\"]\nlatency_ms = [500, 500]")
            .await;
    let charges = (0..4).map(|n| {
        let body = TestSim::charge_body(&format!("o-{n}"), "tok_ok");
        let request = sim.post_request("/v1/payments", &format!("p-{n}"), &body);
        tokio::spawn(async move { answer(request.send().await.unwrap()).await })
    });
    let mut answers = Vec::new();
    for charge in charges.collect::<Vec<_>>() {
        answers.push(charge.await.unwrap());
    }
    let created = answers.iter().filter(|a| a.status == 201).count();
    let over: Vec<_> = answers.iter().filter(|a| a.status == 503).collect();
    assert_eq!((created, over.len()), (2, 2), "{answers:?}");
    assert!(over.iter().all(|a| a.code() == "over_capacity"));
    assert_eq!(sim.ledger().await.payments.len(), 2);
    // Places are given back once requests finish.
    assert_eq!(sim.get("/v1/payments/by-key/p-9").await.status, 404);
}

#[tokio::test]
async fn without_status_query_the_by_key_endpoints_are_501() {
    let sim = start(
        "[inventory]\nstatus_query = false\n[payment]\nstatus_query = false\n[shipping]\nstatus_query = false",
    )
    .await;
    for path in [
        "/v1/reservations/by-key/k",
        "/v1/payments/by-key/k",
        "/v1/shipments/by-key/k",
    ] {
        let answer = sim.get(path).await;
        assert_eq!(
            (answer.status, answer.code()),
            (501, "not_implemented"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_seed_replays_the_same_faults() {
    let profile = "seed = 11\n[faults.\"payment.charge\"]\nerror_500 = 0.5";
    let mut runs = Vec::new();
    for _ in 0..2 {
        let sim = start(profile).await;
        let mut statuses = Vec::new();
        for n in 0..24 {
            statuses.push(sim.charge(&format!("p-{n}"), "o", "tok_ok").await.status);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&500) && runs[0].contains(&201),
        "{:?}",
        runs[0]
    );
}

#[tokio::test]
async fn replacing_faults_changes_behaviour_mid_run() {
    let sim = start(&charge_faults("unavailable_503 = 1.0")).await;
    assert_eq!(sim.charge("p-1", "o-1", "tok_ok").await.status, 503);
    let replaced = sim
        .put_faults(json!({ "faults": { "payment.refund": { "error_500": 1.0 } } }))
        .await;
    assert_eq!(replaced.status, 200);
    let charged = sim.charge("p-1", "o-1", "tok_ok").await;
    assert_eq!(charged.status, 201);
    let id = charged.body["payment_id"].as_str().unwrap();
    let refund = sim
        .post(&format!("/v1/payments/{id}/refund"), "f-1", json!(null))
        .await;
    assert_eq!(refund.status, 500);
}

#[tokio::test]
async fn a_client_hanging_up_ends_the_hang_and_frees_capacity() {
    let profile = "[payment]\ncapacity = 1\n[faults.\"payment.charge\"]\ntimeout_after_apply = 1.0\nhang_ms = 60000";
    let sim = start(profile).await;
    assert!(impatient_charge(&sim, "p-1").await.is_timeout());
    // Were the charge still hanging, its place would turn this away with
    // 503: the hang ends once the server notices the client is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = sim.get("/v1/payments/by-key/p-1").await;
        if status.status != 503 || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (status.status, status.body["status"].as_str()),
        (200, Some("succeeded"))
    );
}
