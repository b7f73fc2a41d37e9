use std::time::Duration;

use downstream_sim::Endpoint;
use serde_json::json;

use crate::common::{TestSim, address, answer, start};

#[tokio::test]
async fn calls_count_every_request_per_endpoint() {
    let sim =
        start("[faults.\"payment.refund\"]\nerror_500 = 1.0\n[shipping]\nstatus_query = false")
            .await;
    let reservation =
        sim.reserve("r-1", "o-1", &[("SKU-1", 1)]).await.body["reservation_id"].clone();
    let id = reservation.as_str().unwrap();
    sim.reserve("r-1", "o-1", &[("SKU-1", 1)]).await;
    sim.get("/v1/reservations/by-key/r-1").await;
    sim.post(&format!("/v1/reservations/{id}/commit"), "c-1", json!(null))
        .await;
    for n in 0..3 {
        sim.post(
            &format!("/v1/reservations/{id}/release"),
            &format!("l-{n}"),
            json!(null),
        )
        .await;
    }
    sim.charge("p-1", "o-1", "tok_declined").await;
    let charged = sim.charge("p-2", "o-1", "tok_ok").await.body["payment_id"].clone();
    sim.get("/v1/payments/by-key/p-2").await;
    sim.post(
        &format!("/v1/payments/{}/refund", charged.as_str().unwrap()),
        "f-1",
        json!(null),
    )
    .await;
    sim.ship("s-1", "o-1", address("NL")).await;
    sim.get("/v1/shipments/by-key/s-1").await;
    sim.get("/v1/shipments/by-key/s-1").await;
    // Control endpoints are not counted.
    sim.get("/_faults").await;
    sim.get("/healthz").await;

    let ledger = sim.ledger().await;
    let expected = [
        (Endpoint::InventoryReserve, 2),
        (Endpoint::InventoryStatus, 1),
        (Endpoint::InventoryCommit, 1),
        (Endpoint::InventoryRelease, 3),
        (Endpoint::PaymentCharge, 2),
        (Endpoint::PaymentStatus, 1),
        (Endpoint::PaymentRefund, 1),
        (Endpoint::ShippingCreate, 1),
        (Endpoint::ShippingStatus, 2),
    ];
    assert_eq!(ledger.calls, expected.into_iter().collect());

    let raw = sim.get("/_ledger").await.body;
    assert_eq!(raw["calls"]["payment.charge"], 2);
    assert_eq!(
        raw["calls"].as_object().unwrap().len(),
        9,
        "every endpoint is listed"
    );
    let created_at = raw["reservations"][0]["created_at"].as_str().unwrap();
    assert!(
        created_at.len() == 24 && created_at.ends_with('Z') && created_at.as_bytes()[19] == b'.',
        "RFC 3339 UTC with milliseconds: {created_at}"
    );
}

#[tokio::test]
async fn reset_empties_the_ledger_keys_and_counts_and_restores_stock() {
    let sim = start("[inventory]\nstock = { \"SKU-SCARCE\" = 2 }").await;
    assert_eq!(
        sim.reserve("r-1", "o-1", &[("SKU-SCARCE", 2)]).await.status,
        201
    );
    assert_eq!(sim.charge("p-1", "o-1", "tok_ok").await.status, 201);
    assert_eq!(sim.ship("s-1", "o-1", address("NL")).await.status, 202);

    let reset = sim.http.post(sim.url("/_reset")).send().await.unwrap();
    assert_eq!(reset.status(), 204);
    let ledger = sim.ledger().await;
    assert!(
        ledger.reservations.is_empty() && ledger.payments.is_empty() && ledger.shipments.is_empty()
    );
    assert!(ledger.calls.values().all(|&n| n == 0), "{:?}", ledger.calls);

    // Stock is back, and used keys are free again (no replay, no mismatch).
    assert_eq!(
        sim.reserve("r-1", "o-9", &[("SKU-SCARCE", 2)]).await.status,
        201
    );
    let recharged = sim.charge("p-1", "o-9", "tok_ok").await;
    assert_eq!(recharged.status, 201);
    assert_eq!(sim.ledger().await.payments[0].order_id, "o-9");
}

#[tokio::test]
async fn replacing_faults_is_validated_and_keeps_ledger_and_stock() {
    let sim = start("seed = 3\n[inventory]\nstock = { \"SKU-SCARCE\" = 2 }").await;
    assert_eq!(
        sim.reserve("r-1", "o-1", &[("SKU-SCARCE", 2)]).await.status,
        201
    );

    let refused = sim
        .put_faults(json!({
            "payment": { "capcity": 1 },
            "faults": {
                "payment.charg": { "error_500": 0.5 },
                "payment.charge": { "error_500": 2, "latency_ms": [9, 1] },
            },
        }))
        .await;
    assert_eq!((refused.status, refused.code()), (400, "invalid_profile"));
    let problems: Vec<&str> = refused.body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let named = |prefix: &str| problems.iter().any(|p| p.starts_with(prefix));
    assert!(named("payment.capcity: unknown key"), "{problems:?}");
    assert!(
        named("faults.\"payment.charg\": unknown endpoint; expected one of"),
        "{problems:?}"
    );
    assert!(
        named("faults.\"payment.charge\".error_500: probability 2"),
        "{problems:?}"
    );
    assert!(
        named("faults.\"payment.charge\".latency_ms: min 9 is greater than max 1"),
        "{problems:?}"
    );
    let not_json = answer(
        sim.http
            .put(sim.url("/_faults"))
            .body("{")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((not_json.status, not_json.code()), (400, "invalid_profile"));

    let in_force = sim.get("/_faults").await.body;
    assert_eq!(in_force["seed"], 3);
    assert_eq!(in_force["inventory"]["stock"]["SKU-SCARCE"], 2);
    assert_eq!(in_force["faults"], json!({}));

    let replaced = sim
        .put_faults(json!({
            "inventory": { "stock": { "SKU-SCARCE": 2 } },
            "payment": { "idempotent": false, "processing_ms": 50 },
            "faults": { "payment.charge": { "latency_ms": [1, 2] } },
        }))
        .await;
    assert_eq!(replaced.status, 200, "{replaced:?}");
    let in_force = sim.get("/_faults").await.body;
    assert_eq!(in_force["seed"], 3, "an unseeded update keeps the seed");
    assert_eq!(in_force["payment"]["idempotent"], false);
    assert_eq!(
        in_force["faults"]["payment.charge"]["latency_ms"],
        json!([1, 2])
    );
    assert_eq!(in_force["faults"]["payment.charge"]["hang_ms"], 30000);

    assert_eq!(
        sim.ledger().await.reservations.len(),
        1,
        "the ledger is kept"
    );
    let still_short = sim.reserve("r-2", "o-2", &[("SKU-SCARCE", 1)]).await;
    assert_eq!(
        still_short.code(),
        "insufficient_stock",
        "stock levels are kept"
    );
    let first = sim.charge("p-1", "o-1", "tok_ok").await;
    let second = sim.charge("p-1", "o-1", "tok_ok").await;
    assert_ne!(
        first.body["payment_id"], second.body["payment_id"],
        "now not idempotent"
    );
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let sim = start("").await;
    let health = sim.get("/healthz").await;
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (200, Some("ok"))
    );
    let unknown = sim.get("/v2/nothing").await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
}

#[tokio::test]
async fn shutdown_releases_hanging_requests() {
    let profile = downstream_sim::Profile::from_toml(
        "[faults.\"payment.charge\"]\ntimeout_after_apply = 1.0\nhang_ms = 60000",
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let url = format!("{base}/v1/payments");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(downstream_sim::run(listener, profile, async {
        let _ = stopped.await;
    }));
    let request = reqwest::Client::new()
        .post(url)
        .header("Idempotency-Key", "p-1")
        .json(&TestSim::charge_body("o-1", "tok_ok"))
        .send();
    let pending = tokio::spawn(request);
    // Stopped once the charge is applied and its response held back.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ledger: downstream_sim::Ledger = reqwest::get(format!("{base}/_ledger"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !ledger.payments.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the charge was not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(matches!(finished, Ok(Ok(Ok(())))), "{finished:?}");
    let held = pending.await.unwrap().unwrap();
    assert_eq!(held.status(), 201, "the held response is sent at shutdown");
}
