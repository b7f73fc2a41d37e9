use downstream_sim::Endpoint;
use downstream_sim::ledger::ReservationState;
use serde_json::json;

use crate::common::start;

const PROFILE: &str = r#"
[inventory]
stock = { "SKU-SCARCE" = 5, "SKU-RARE" = 1 }
"#;

#[tokio::test]
async fn reserve_takes_stock_and_release_gives_it_back() {
    let sim = start(PROFILE).await;

    let first = sim
        .reserve("r-1", "o-1", &[("SKU-SCARCE", 3), ("SKU-ANY", 100)])
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(first.body["status"], "reserved");
    let first_id = first.body["reservation_id"].as_str().unwrap().to_owned();

    let short = sim.reserve("r-2", "o-2", &[("SKU-SCARCE", 3)]).await;
    assert_eq!((short.status, short.code()), (409, "insufficient_stock"));

    // One short item refuses the whole reservation: SKU-RARE is not taken.
    let mixed = sim
        .reserve("r-3", "o-3", &[("SKU-RARE", 1), ("SKU-SCARCE", 3)])
        .await;
    assert_eq!((mixed.status, mixed.code()), (409, "insufficient_stock"));
    let rare = sim.reserve("r-4", "o-4", &[("SKU-RARE", 1)]).await;
    assert_eq!(rare.status, 201, "{rare:?}");

    let released = sim
        .post(
            &format!("/v1/reservations/{first_id}/release"),
            "rel-1",
            json!(null),
        )
        .await;
    assert_eq!(released.status, 200);
    assert_eq!(
        released.body,
        json!({ "reservation_id": first_id, "status": "released" })
    );

    let all_five = sim.reserve("r-5", "o-5", &[("SKU-SCARCE", 5)]).await;
    assert_eq!(all_five.status, 201, "released stock is back: {all_five:?}");

    let ledger = sim.ledger().await;
    let states: Vec<_> = ledger
        .reservations
        .iter()
        .map(|r| (r.order_id.as_str(), r.state))
        .collect();
    assert_eq!(
        states,
        [
            ("o-1", ReservationState::Released),
            ("o-4", ReservationState::Reserved),
            ("o-5", ReservationState::Reserved),
        ]
    );
    assert_eq!(ledger.reservations[0].key, "r-1");
    assert_eq!(ledger.reservations[0].items[1].quantity, 100);
    assert!(ledger.reservations[0].updated_at > ledger.reservations[0].created_at);
    assert_eq!(ledger.calls_to(Endpoint::InventoryReserve), 5);
    assert_eq!(ledger.calls_to(Endpoint::InventoryRelease), 1);
}

#[tokio::test]
async fn commit_and_release_are_idempotent_and_exclusive() {
    let sim = start(PROFILE).await;
    let a = sim.reserve("r-a", "o-a", &[("SKU-SCARCE", 1)]).await.body["reservation_id"].clone();
    let b = sim.reserve("r-b", "o-b", &[("SKU-SCARCE", 1)]).await.body["reservation_id"].clone();
    let (a, b) = (a.as_str().unwrap(), b.as_str().unwrap());

    // Distinct keys, so repeats hit the business rule, not the key store.
    for key in ["c-1", "c-2"] {
        let committed = sim
            .post(&format!("/v1/reservations/{a}/commit"), key, json!(null))
            .await;
        assert_eq!(committed.status, 200);
        assert_eq!(
            committed.body,
            json!({ "reservation_id": a, "status": "committed" })
        );
    }
    for key in ["l-1", "l-2"] {
        let released = sim
            .post(&format!("/v1/reservations/{b}/release"), key, json!(null))
            .await;
        assert_eq!(
            (released.status, released.body["status"].as_str()),
            (200, Some("released"))
        );
    }
    let release_committed = sim
        .post(&format!("/v1/reservations/{a}/release"), "l-3", json!(null))
        .await;
    assert_eq!(
        (release_committed.status, release_committed.code()),
        (409, "already_committed")
    );
    let commit_released = sim
        .post(&format!("/v1/reservations/{b}/commit"), "c-3", json!(null))
        .await;
    assert_eq!(
        (commit_released.status, commit_released.code()),
        (409, "already_released")
    );
    let unknown = sim
        .post("/v1/reservations/res_999999/commit", "c-4", json!(null))
        .await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
    let unknown = sim
        .post("/v1/reservations/res_999999/release", "l-4", json!(null))
        .await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));

    let status = sim.get("/v1/reservations/by-key/r-a").await;
    assert_eq!(status.status, 200);
    assert_eq!(
        status.body,
        json!({ "reservation_id": a, "order_id": "o-a", "status": "committed" })
    );
    let status = sim.get("/v1/reservations/by-key/r-b").await;
    assert_eq!(status.body["status"], "released");
    let missing = sim.get("/v1/reservations/by-key/never-used").await;
    assert_eq!((missing.status, missing.code()), (404, "not_found"));

    let ledger = sim.ledger().await;
    assert_eq!(ledger.reservations[0].state, ReservationState::Committed);
    assert_eq!(ledger.reservations[1].state, ReservationState::Released);
}

#[tokio::test]
async fn missing_key_and_malformed_bodies_are_refused_and_counted() {
    let sim = start("").await;
    let no_key = sim
        .http
        .post(sim.url("/v1/reservations"))
        .json(&json!({ "order_id": "o-1", "items": [{ "sku": "S", "quantity": 1 }] }))
        .send()
        .await
        .unwrap();
    let no_key = crate::common::answer(no_key).await;
    assert_eq!(
        (no_key.status, no_key.code()),
        (400, "missing_idempotency_key")
    );

    let no_key = crate::common::answer(
        sim.http
            .post(sim.url("/v1/reservations/res_1/commit"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (no_key.status, no_key.code()),
        (400, "missing_idempotency_key")
    );

    for body in [
        json!({ "order_id": "o-1" }),
        json!({ "order_id": "o-1", "items": [] }),
        json!({ "order_id": "o-1", "items": [{ "sku": "S", "quantity": 0 }] }),
        json!({ "order_id": "o-1", "items": [{ "sku": "S", "quantity": -1 }] }),
    ] {
        let malformed = sim.post("/v1/reservations", "k", body.clone()).await;
        assert_eq!(
            (malformed.status, malformed.code()),
            (400, "malformed_request"),
            "{body}"
        );
        assert!(!malformed.body["message"].as_str().unwrap().is_empty());
    }
    let not_json = crate::common::answer(
        sim.http
            .post(sim.url("/v1/reservations"))
            .header("Idempotency-Key", "k")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (not_json.status, not_json.code()),
        (400, "malformed_request")
    );

    let ledger = sim.ledger().await;
    assert!(ledger.reservations.is_empty());
    assert_eq!(ledger.calls_to(Endpoint::InventoryReserve), 6);
    assert_eq!(ledger.calls_to(Endpoint::InventoryCommit), 1);
}
