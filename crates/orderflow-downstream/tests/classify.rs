//! Every fault and business outcome of the simulator yields the documented
//! class and certainty through the real clients.

mod support;

use support::{Sim, items};

use orderflow_core::message::{OrderId, ShippingAddress};
use orderflow_core::{Certainty, FailureClass, Policy};
use orderflow_downstream::{IdempotencyKey, InventoryApi, Operation, PaymentApi, ShippingApi};
use std::time::Duration;

use Certainty::*;
use FailureClass::*;

/// Short timeouts so a held-back response is a client timeout quickly.
fn policy() -> Policy {
    let mut policy = Policy::default_policy();
    for stage in orderflow_core::Stage::ALL {
        let d = match stage {
            orderflow_core::Stage::Inventory => &mut policy.downstreams.inventory,
            orderflow_core::Stage::Payment => &mut policy.downstreams.payment,
            orderflow_core::Stage::Shipping => &mut policy.downstreams.shipping,
        };
        d.request_timeout = Duration::from_millis(300);
    }
    policy
}

fn order(id: &str) -> OrderId {
    OrderId::parse(id).unwrap()
}

fn address(country: &str) -> ShippingAddress {
    ShippingAddress {
        name: "Ada".into(),
        line1: "1 Main St".into(),
        line2: None,
        city: "Berlin".into(),
        postal_code: "10115".into(),
        country: country.into(),
    }
}

/// One €5 charge of `id` with a good card, under its own key.
async fn charge_ok(
    api: &PaymentApi,
    id: &OrderId,
) -> orderflow_downstream::Answer<orderflow_downstream::api::Payment> {
    let key = IdempotencyKey::new(id, Operation::Charge);
    api.charge(&key, id, 500, "EUR", "tok_ok").await
}

fn pair<T>(answer: &orderflow_downstream::Answer<T>) -> (FailureClass, Certainty) {
    (answer.outcome.class, answer.outcome.certainty)
}

async fn charge_with_fault(
    fault: &str,
) -> (
    (FailureClass, Certainty),
    downstream_sim::Ledger,
    Option<Duration>,
) {
    let sim = Sim::start(&format!(
        "[faults.\"payment.charge\"]\n{fault} = 1.0\nhang_ms = 2000\n"
    ))
    .await;
    let api = PaymentApi::new(&sim.base, &policy()).unwrap();
    let id = order("o-fault");
    let answer = charge_ok(&api, &id).await;
    (
        pair(&answer),
        sim.ledger().await,
        answer.outcome.retry_after,
    )
}

#[tokio::test]
async fn a_timeout_after_apply_is_unknown_and_the_charge_exists() {
    let (outcome, ledger, _) = charge_with_fault("timeout_after_apply").await;
    assert_eq!(outcome, (Timeout, Unknown));
    assert_eq!(ledger.payments.len(), 1);
}

#[tokio::test]
async fn a_timeout_before_apply_is_just_as_unknown_to_the_client() {
    let (outcome, ledger, _) = charge_with_fault("timeout_before_apply").await;
    assert_eq!(outcome, (Timeout, Unknown));
    assert!(ledger.payments.is_empty());
}

#[tokio::test]
async fn a_500_is_transient_and_unknown() {
    assert_eq!(charge_with_fault("error_500").await.0, (Transient, Unknown));
}

#[tokio::test]
async fn a_503_is_overloaded_and_not_applied() {
    assert_eq!(
        charge_with_fault("unavailable_503").await.0,
        (Overloaded, NotApplied)
    );
}

#[tokio::test]
async fn a_429_is_rate_limited_with_its_retry_after() {
    let (outcome, _, retry_after) = charge_with_fault("rate_limited_429").await;
    assert_eq!(outcome, (RateLimited, NotApplied));
    assert_eq!(retry_after, Some(Duration::from_secs(1)));
}

#[tokio::test]
async fn a_reset_after_apply_is_unknown_and_the_charge_exists() {
    let (outcome, ledger, _) = charge_with_fault("reset_after_apply").await;
    assert_eq!(outcome, (Transient, Unknown));
    assert_eq!(ledger.payments.len(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_not_applied() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let api = PaymentApi::new(&base, &policy()).unwrap();
    let id = order("o-down");
    let answer = charge_ok(&api, &id).await;
    assert_eq!(pair(&answer), (Transient, NotApplied));
}

#[tokio::test]
async fn payment_business_outcomes_are_classified() {
    let sim = Sim::start("[payment]\nprocessing_ms = 60000\n").await;
    let api = PaymentApi::new(&sim.base, &policy()).unwrap();
    let cases = [
        ("tok_ok", (Success, Applied)),
        ("tok_declined", (BusinessRejection, NotApplied)),
        ("tok_insufficient_funds", (BusinessRejection, NotApplied)),
        ("tok_fraud", (BusinessRejection, NotApplied)),
        ("tok_processing", (Success, Unknown)),
    ];
    for (token, expected) in cases {
        let id = order(&format!("o-{}", token.replace('_', "-")));
        let key = IdempotencyKey::new(&id, Operation::Charge);
        let answer = api.charge(&key, &id, 500, "EUR", token).await;
        assert_eq!(pair(&answer), expected, "{token}");
        if expected.0 == Success {
            assert!(answer.body.is_some_and(|p| p.payment_id.starts_with("pay")));
        }
        // The status query agrees on the charges that exist.
        let status = api.payment(&key).await;
        let expected_status = match token {
            "tok_ok" => (Success, Applied),
            "tok_processing" => (Success, Unknown),
            _ => (Transient, NotApplied),
        };
        assert_eq!(pair(&status), expected_status, "status of {token}");
    }
}

#[tokio::test]
async fn a_charge_failed_after_processing_is_a_confirmed_failure() {
    let sim = Sim::start("[payment]\nprocessing_ms = 50\n").await;
    let api = PaymentApi::new(&sim.base, &policy()).unwrap();
    let id = order("o-late-fail");
    let key = IdempotencyKey::new(&id, Operation::Charge);
    assert_eq!(
        pair(
            &api.charge(&key, &id, 500, "EUR", "tok_processing_fail")
                .await
        ),
        (Success, Unknown)
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        pair(&api.payment(&key).await),
        (BusinessRejection, NotApplied)
    );
}

#[tokio::test]
async fn idempotency_conflicts_are_classified() {
    let sim = Sim::start("[faults.\"payment.charge\"]\nlatency_ms = [400, 400]\n").await;
    let mut slow = policy();
    slow.downstreams.payment.request_timeout = Duration::from_secs(2);
    let api = PaymentApi::new(&sim.base, &slow).unwrap();
    let id = order("o-idem");
    let key = IdempotencyKey::new(&id, Operation::Charge);
    let (first, second) = tokio::join!(api.charge(&key, &id, 500, "EUR", "tok_ok"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        api.charge(&key, &id, 500, "EUR", "tok_ok").await
    });
    assert_eq!(pair(&first), (Success, Applied));
    assert_eq!(
        pair(&second),
        (Timeout, Unknown),
        "request_in_progress: the first is still running"
    );
    let other_body = api.charge(&key, &id, 999, "EUR", "tok_ok").await;
    assert_eq!(
        pair(&other_body),
        (Infrastructure, NotApplied),
        "idempotency_mismatch"
    );
}

#[tokio::test]
async fn inventory_outcomes_are_classified() {
    let sim = Sim::start("[inventory]\nstock = { \"SKU-1\" = 1 }\n").await;
    let api = InventoryApi::new(&sim.base, &policy()).unwrap();
    let first = order("o-inv-1");
    let key = IdempotencyKey::new(&first, Operation::Reserve);
    assert_eq!(
        pair(&api.status_of(&key).await),
        (Transient, NotApplied),
        "not found yet"
    );
    let reserved = api.reserve(&key, &first, &items()).await;
    assert_eq!(pair(&reserved), (Success, Applied));
    assert_eq!(pair(&api.status_of(&key).await), (Success, Applied));
    let second = order("o-inv-2");
    let short = api
        .reserve(
            &IdempotencyKey::new(&second, Operation::Reserve),
            &second,
            &items(),
        )
        .await;
    assert_eq!(pair(&short), (BusinessRejection, NotApplied));
    assert_eq!(short.outcome.code.as_deref(), Some("insufficient_stock"));

    let reservation_id = reserved.body.unwrap().reservation_id;
    let released = api
        .release(
            &IdempotencyKey::new(&first, Operation::Release),
            &reservation_id,
        )
        .await;
    assert_eq!(pair(&released), (Success, Applied));
    assert_eq!(
        sim.ledger().await.reservations[0].state,
        downstream_sim::ledger::ReservationState::Released
    );
}

#[tokio::test]
async fn a_missing_status_query_is_unknown_not_not_applied() {
    let sim = Sim::start("[inventory]\nstatus_query = false\n").await;
    let api = InventoryApi::new(&sim.base, &policy()).unwrap();
    let id = order("o-nostatus");
    let answer = api
        .status_of(&IdempotencyKey::new(&id, Operation::Reserve))
        .await;
    assert_eq!(pair(&answer), (Infrastructure, Unknown));
}

/// A status query refused, rate limited, failed or cut off is the query
/// going unanswered: it says nothing of the charge it asks about, which
/// stays unknown whatever the query's own class (kept for the breaker and
/// the in-flight limit). Only the contract's answers to a query — found,
/// `not_found`, `failed` — speak of the charge.
#[tokio::test]
async fn a_status_query_that_goes_unanswered_says_nothing_of_the_operation() {
    for (fault, class) in [
        ("unavailable_503", Overloaded),
        ("rate_limited_429", RateLimited),
        ("error_500", Transient),
        ("timeout_before_apply", Timeout),
    ] {
        let sim = Sim::start(&format!(
            "[faults.\"payment.status\"]\n{fault} = 1.0\nhang_ms = 2000\n"
        ))
        .await;
        let api = PaymentApi::new(&sim.base, &policy()).unwrap();
        let id = order("o-unanswered");
        let answer = api
            .payment(&IdempotencyKey::new(&id, Operation::Charge))
            .await;
        assert_eq!(pair(&answer), (class, Unknown), "{fault}");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let api = PaymentApi::new(&base, &policy()).unwrap();
    let answer = api
        .payment(&IdempotencyKey::new(&order("o-down"), Operation::Charge))
        .await;
    assert_eq!(pair(&answer), (Transient, Unknown), "a refused connection");
}

#[tokio::test]
async fn shipping_outcomes_are_classified() {
    let sim = Sim::start("[shipping]\nunsupported_countries = [\"ZZ\"]\n").await;
    let api = ShippingApi::new(&sim.base, &policy()).unwrap();
    let ok = order("o-ship-ok");
    let key = IdempotencyKey::new(&ok, Operation::Ship);
    assert_eq!(
        pair(&api.create(&key, &ok, &address("DE"), &items()).await),
        (Success, Applied)
    );
    let found = api.shipment(&key).await;
    assert_eq!(pair(&found), (Success, Applied));
    assert_eq!(found.body.unwrap().status, "accepted");

    let zz = order("o-ship-zz");
    let refused = api
        .create(
            &IdempotencyKey::new(&zz, Operation::Ship),
            &zz,
            &address("ZZ"),
            &items(),
        )
        .await;
    assert_eq!(pair(&refused), (BusinessRejection, NotApplied));
    assert_eq!(
        refused.outcome.code.as_deref(),
        Some("unsupported_destination")
    );
    let mut blank = address("DE");
    blank.city = String::new();
    let bad = order("o-ship-bad");
    let invalid = api
        .create(
            &IdempotencyKey::new(&bad, Operation::Ship),
            &bad,
            &blank,
            &items(),
        )
        .await;
    assert_eq!(invalid.outcome.code.as_deref(), Some("invalid_address"));
    assert_eq!(pair(&invalid), (BusinessRejection, NotApplied));
}

#[tokio::test]
async fn over_capacity_is_overloaded() {
    let sim = Sim::start(
        "[shipping]\ncapacity = 1\n[faults.\"shipping.create\"]\nlatency_ms = [300, 300]\n",
    )
    .await;
    let mut slow = policy();
    slow.downstreams.shipping.request_timeout = Duration::from_secs(2);
    let api = ShippingApi::new(&sim.base, &slow).unwrap();
    let (a, b) = (order("o-cap-a"), order("o-cap-b"));
    let (key_a, to, lines) = (
        IdempotencyKey::new(&a, Operation::Ship),
        address("DE"),
        items(),
    );
    let (first, second) = tokio::join!(api.create(&key_a, &a, &to, &lines), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        api.create(
            &IdempotencyKey::new(&b, Operation::Ship),
            &b,
            &address("DE"),
            &items(),
        )
        .await
    });
    assert_eq!(pair(&first), (Success, Applied));
    assert_eq!(pair(&second), (Overloaded, NotApplied));
}

#[tokio::test]
async fn a_bad_base_url_is_refused_with_its_name() {
    let err = PaymentApi::new("ftp://payments", &policy())
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("payment API base URL `ftp://payments`"),
        "{err}"
    );
    assert!(PaymentApi::new("not a url", &policy()).is_err());
}

#[tokio::test]
async fn a_503_storm_opens_the_breaker_and_recovery_closes_it() {
    use orderflow_core::decide::BreakerState;
    let sim = Sim::start("[faults.\"inventory.reserve\"]\nunavailable_503 = 1.0\n").await;
    let mut fast = policy();
    fast.downstreams.inventory.breaker.min_calls = 5;
    fast.downstreams.inventory.breaker.open_for = Duration::from_millis(300);
    fast.downstreams.inventory.breaker.half_open_calls = 2;
    let api = InventoryApi::new(&sim.base, &fast).unwrap();
    let reserve = |n: u32| {
        let id = order(&format!("o-storm-{n}"));
        let api = &api;
        async move {
            api.reserve(&IdempotencyKey::new(&id, Operation::Reserve), &id, &items())
                .await
        }
    };
    for n in 0..5 {
        assert_eq!(pair(&reserve(n).await), (Overloaded, NotApplied));
    }
    assert_eq!(api.0.breaker().state(), BreakerState::Open);
    let calls_before = sim
        .ledger()
        .await
        .calls_to(downstream_sim::Endpoint::InventoryReserve);
    let refused = reserve(99).await;
    assert_eq!(pair(&refused), (Overloaded, NotApplied));
    let calls_after = sim
        .ledger()
        .await
        .calls_to(downstream_sim::Endpoint::InventoryReserve);
    assert_eq!(calls_before, calls_after, "an open breaker sends nothing");

    // The outage ends; after open_for the trial calls succeed and it closes.
    let healed = reqwest::Client::new()
        .put(format!("{}/_faults", sim.base))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(healed.status().is_success());
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(api.0.breaker().state(), BreakerState::HalfOpen);
    for n in 100..102 {
        assert_eq!(pair(&reserve(n).await), (Success, Applied));
    }
    assert_eq!(api.0.breaker().state(), BreakerState::Closed);
}

#[tokio::test]
async fn status_queries_answered_not_found_keep_the_breaker_closed() {
    // After an outage many re-checks find nothing: a healthy answer, not a
    // failure, or the breaker would never close again.
    let sim = Sim::start("").await;
    let api = PaymentApi::new(&sim.base, &policy()).unwrap();
    for n in 0..40 {
        let key = IdempotencyKey::new(&order(&format!("nf-{n}")), Operation::Charge);
        let answer = api.payment(&key).await;
        assert_eq!(
            (answer.outcome.class, answer.outcome.certainty),
            (Transient, NotApplied)
        );
    }
    assert_eq!(
        api.0.breaker().state(),
        orderflow_core::decide::BreakerState::Closed
    );
}
