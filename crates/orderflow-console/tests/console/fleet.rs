//! The fleet page and the charts, against a namespace set up by hand.

use crate::common::Fleet;
use orderflow_broker::Meta;
use orderflow_core::decide::BreakerState;
use orderflow_core::{OrderState, Stage};
use orderflow_store::Heartbeat;
use std::collections::BTreeMap;
use std::time::Duration;

fn heartbeat(actor: &str, role: &str, policy_id: &str, payment: BreakerState) -> Heartbeat {
    Heartbeat {
        actor: actor.to_owned(),
        role: role.to_owned(),
        policy_id: policy_id.to_owned(),
        started_at: jiff::Timestamp::now(),
        breakers: BTreeMap::from([(Stage::Payment, payment)]),
        paused: false,
    }
}

#[tokio::test]
async fn the_fleet_page_shows_stages_orders_breakers_and_drift() {
    let fleet = Fleet::new().await;
    fleet.order("o-new", &[], vec![]).await;
    fleet
        .order(
            "o-esc",
            &[(OrderState::Escalated, Some("payment_unresolved"))],
            vec![],
        )
        .await;
    for i in 0..2 {
        let meta = Meta {
            message_id: Some(format!("m-{i}")),
            reason: Some("payment_unresolved".into()),
            ..Meta::default()
        };
        fleet.park(Stage::Payment, b"{}", meta).await;
    }
    let ttl = Duration::from_secs(30);
    fleet
        .store
        .write_heartbeat(
            &heartbeat(
                "payment-worker@a/1",
                "payment",
                "pol-one",
                BreakerState::Open,
            ),
            ttl,
        )
        .await
        .unwrap();

    let (status, page) = fleet.get("/").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(r#"id="live" data-refresh="5""#),
        "the page refreshes itself"
    );
    assert!(page.contains(r#"data-stage="payment""#));
    assert!(
        page.contains(r#"href="/exceptions/payment?reason=payment_unresolved""#),
        "exceptions by reason link to their messages: {page}"
    );
    assert!(page.contains("payment_unresolved ×2"), "{page}");
    assert!(
        page.contains("open ×1"),
        "the open breaker is shown: {page}"
    );
    assert!(page.contains("the payment breaker is open in 1 worker(s)"));
    assert!(
        page.contains(r#"id="redis""#) && page.contains("One node"),
        "the Redis under the fleet is shown: {page}"
    );
    assert!(
        !page.contains(r#"id="drift""#),
        "one policy live is no drift"
    );

    fleet
        .store
        .write_heartbeat(
            &heartbeat(
                "payment-worker@b/2",
                "payment",
                "pol-two",
                BreakerState::Closed,
            ),
            ttl,
        )
        .await
        .unwrap();
    let (_, page) = fleet.get("/").await;
    assert!(
        page.contains(r#"id="drift""#),
        "two policies live is drift: {page}"
    );
    assert!(page.contains("2 policies are live at once"));
}

#[tokio::test]
async fn the_charts_draw_the_last_hour_from_the_audit_stream() {
    let fleet = Fleet::new().await;
    fleet
        .order(
            "o-1",
            &[
                (OrderState::InventoryPending, None),
                (OrderState::Reserved, None),
            ],
            vec![],
        )
        .await;
    let response = fleet
        .http
        .get(format!("{}/charts/orders.svg", fleet.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let orders = response.text().await.unwrap();
    assert!(orders.starts_with("<svg"), "{orders}");
    assert!(
        orders.contains(">reserved</text>"),
        "the state it holds: {orders}"
    );
    assert!(
        !orders.contains(">inventory_pending</text>"),
        "a line is drawn from minute marks: a state held between two is not: {orders}"
    );
    let (status, decisions) = fleet.get("/charts/decisions.svg").await;
    assert_eq!(status, 200);
    assert!(decisions.starts_with("<svg"), "{decisions}");
    assert!(decisions.contains("Decisions per minute, by class"));
}
