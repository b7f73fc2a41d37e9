use std::time::Duration;

use downstream_sim::ledger::ShipmentState;
use serde_json::json;

use crate::common::{address, start};

#[tokio::test]
async fn accepts_refuses_destination_and_invalid_address() {
    let sim = start("[shipping]\nunsupported_countries = [\"ZZ\"]").await;
    let accepted = sim.ship("s-1", "o-1", address("NL")).await;
    assert_eq!(accepted.status, 202);
    assert_eq!(accepted.body["status"], "accepted");

    let unsupported = sim.ship("s-2", "o-2", address("zz")).await;
    assert_eq!(
        (unsupported.status, unsupported.code()),
        (422, "unsupported_destination")
    );

    for field in ["name", "line1", "city", "postal_code"] {
        let mut bad = address("NL");
        bad[field] = json!("  ");
        let invalid = sim.ship(&format!("s-{field}"), "o-3", bad).await;
        assert_eq!(
            (invalid.status, invalid.code()),
            (422, "invalid_address"),
            "{field}"
        );
    }

    let status = sim.get("/v1/shipments/by-key/s-1").await;
    assert_eq!(status.status, 200);
    assert_eq!(
        status.body,
        json!({ "shipment_id": accepted.body["shipment_id"], "order_id": "o-1", "status": "accepted" })
    );
    assert_eq!(sim.get("/v1/shipments/by-key/s-2").await.status, 404);
    let ledger = sim.ledger().await;
    assert_eq!(ledger.shipments.len(), 1);
    assert_eq!(ledger.shipments[0].key, "s-1");
}

#[tokio::test]
async fn fulfilment_progresses_to_delivered() {
    let sim = start("[shipping]\nfulfilment_step_ms = 80").await;
    assert_eq!(sim.ship("s-1", "o-1", address("NL")).await.status, 202);
    let order = ["accepted", "picking", "packed", "handed_off", "delivered"];
    let mut seen = Vec::new();
    for _ in 0..100 {
        let status = sim.get("/v1/shipments/by-key/s-1").await.body["status"].clone();
        let step = order
            .iter()
            .position(|s| *s == status)
            .expect("a fulfilment step");
        seen.push(step);
        if step == order.len() - 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "steps never go back: {seen:?}"
    );
    assert!(
        seen.iter().any(|step| (1..=3).contains(step)),
        "in between: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&4));

    let shipment = &sim.ledger().await.shipments[0];
    assert_eq!(shipment.state, ShipmentState::Delivered);
    assert_eq!(shipment.exception_code, None);
    assert_eq!(
        shipment
            .updated_at
            .duration_since(shipment.created_at)
            .as_millis(),
        320
    );
}

#[tokio::test]
async fn certain_fulfilment_exception_ends_in_exception() {
    let sim = start("[shipping]\nfulfilment_step_ms = 20\nfulfilment_exception = 1.0").await;
    for n in 0..5 {
        assert_eq!(
            sim.ship(&format!("s-{n}"), "o", address("NL")).await.status,
            202
        );
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    let status = sim.get("/v1/shipments/by-key/s-0").await;
    assert_eq!(status.body["status"], "exception");
    assert_eq!(status.body["exception_code"], "damaged_in_transit");
    for shipment in sim.ledger().await.shipments {
        assert_eq!(shipment.state, ShipmentState::Exception);
        assert_eq!(
            shipment.exception_code.as_deref(),
            Some("damaged_in_transit")
        );
        let at = shipment
            .updated_at
            .duration_since(shipment.created_at)
            .as_millis();
        assert!(
            [20, 40, 60, 80].contains(&at),
            "the exception replaces a step: {at} ms"
        );
    }
}
