use std::time::Duration;

use downstream_sim::Endpoint;
use downstream_sim::ledger::PaymentState;
use serde_json::json;

use crate::common::start;

#[tokio::test]
async fn tokens_decide_the_outcome_and_refusals_leave_no_record() {
    let sim = start("").await;
    let ok = sim.charge("p-ok", "o-ok", "tok_ok").await;
    assert_eq!(ok.status, 201);
    assert_eq!(ok.body["status"], "succeeded");
    let cases = [
        ("tok_declined", "card_declined"),
        ("tok_insufficient_funds", "insufficient_funds"),
        ("tok_fraud", "fraud_suspected"),
        ("tok_who_knows", "card_declined"),
    ];
    for (token, code) in cases {
        let refused = sim.charge(&format!("p-{token}"), "o-x", token).await;
        assert_eq!((refused.status, refused.code()), (402, code), "{token}");
        let status = sim.get(&format!("/v1/payments/by-key/p-{token}")).await;
        assert_eq!(status.status, 404, "a refused charge is not a payment");
    }

    let status = sim.get("/v1/payments/by-key/p-ok").await;
    assert_eq!(
        status.body,
        json!({ "payment_id": ok.body["payment_id"], "order_id": "o-ok", "status": "succeeded" })
    );
    let ledger = sim.ledger().await;
    assert_eq!(ledger.payments.len(), 1);
    let payment = &ledger.payments[0];
    assert_eq!((payment.amount, payment.currency.as_str()), (4200, "EUR"));
    assert_eq!(
        (payment.key.as_str(), payment.state),
        ("p-ok", PaymentState::Succeeded)
    );
    assert_eq!(ledger.calls_to(Endpoint::PaymentCharge), 5);
    assert_eq!(ledger.calls_to(Endpoint::PaymentStatus), 5);
}

#[tokio::test]
async fn processing_charges_settle_after_processing_ms() {
    let sim = start("[payment]\nprocessing_ms = 250").await;
    let will_succeed = sim.charge("p-1", "o-1", "tok_processing").await;
    let will_fail = sim.charge("p-2", "o-2", "tok_processing_fail").await;
    for answer in [&will_succeed, &will_fail] {
        assert_eq!(
            (answer.status, answer.body["status"].as_str()),
            (201, Some("processing"))
        );
    }
    assert_eq!(
        sim.get("/v1/payments/by-key/p-1").await.body["status"],
        "processing"
    );
    let early = sim.ledger().await;
    assert!(
        early
            .payments
            .iter()
            .all(|p| p.state == PaymentState::Processing)
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sim.get("/v1/payments/by-key/p-1").await.body["status"],
        "succeeded"
    );
    assert_eq!(
        sim.get("/v1/payments/by-key/p-2").await.body["status"],
        "failed"
    );
    let ledger = sim.ledger().await;
    let states: Vec<_> = ledger.payments.iter().map(|p| p.state).collect();
    assert_eq!(states, [PaymentState::Succeeded, PaymentState::Failed]);
    for payment in &ledger.payments {
        let settled_after = payment.updated_at.duration_since(payment.created_at);
        assert_eq!(
            settled_after.as_millis(),
            250,
            "updated_at is when it settled"
        );
    }
}

#[tokio::test]
async fn refunds_only_succeeded_payments() {
    let sim = start("[payment]\nprocessing_ms = 250").await;
    let ok = sim.charge("p-ok", "o-1", "tok_ok").await.body["payment_id"].clone();
    let ok = ok.as_str().unwrap();
    for key in ["f-1", "f-2"] {
        let refunded = sim
            .post(&format!("/v1/payments/{ok}/refund"), key, json!(null))
            .await;
        assert_eq!(refunded.status, 200);
        assert_eq!(
            refunded.body,
            json!({ "payment_id": ok, "status": "refunded" })
        );
    }

    let pending = sim
        .charge("p-pending", "o-2", "tok_processing_fail")
        .await
        .body["payment_id"]
        .clone();
    let pending = pending.as_str().unwrap();
    let too_early = sim
        .post(
            &format!("/v1/payments/{pending}/refund"),
            "f-3",
            json!(null),
        )
        .await;
    assert_eq!(
        (too_early.status, too_early.code()),
        (409, "not_refundable")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let failed = sim
        .post(
            &format!("/v1/payments/{pending}/refund"),
            "f-4",
            json!(null),
        )
        .await;
    assert_eq!((failed.status, failed.code()), (409, "not_refundable"));
    let unknown = sim
        .post("/v1/payments/pay_999999/refund", "f-5", json!(null))
        .await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));

    assert_eq!(
        sim.get("/v1/payments/by-key/p-ok").await.body["status"],
        "refunded"
    );
    let states: Vec<_> = sim
        .ledger()
        .await
        .payments
        .iter()
        .map(|p| p.state)
        .collect();
    assert_eq!(states, [PaymentState::Refunded, PaymentState::Failed]);
}
