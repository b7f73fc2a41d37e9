//! A 2xx is a success only when it is the contract's answer to the call:
//! every other shape of 2xx (a page, an empty body, other JSON, a status
//! the contract does not have for the call, a body past the size cap) is
//! `infrastructure` / `unknown` with the code `off_contract`, and says what
//! came instead. The start-up check tells the contract's API from anything
//! else.

use orderflow_core::message::OrderId;
use orderflow_core::{Certainty, FailureClass, Policy};
use orderflow_downstream::transport::MAX_ANSWER_BYTES;
use orderflow_downstream::{IdempotencyKey, OFF_CONTRACT, Operation, PaymentApi, ShippingApi};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server that answers every request with `status`, `content_type` and
/// `body`; returns its base URL.
async fn answering(status: &str, content_type: &str, body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (head, body) = (head.clone(), body.clone());
            tokio::spawn(async move {
                // The request's head (and a small body) arrive in one read.
                let mut request = vec![0; 64 * 1024];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    base
}

/// The simulator with `profile`; dropped, it stops.
async fn simulator(profile: &str) -> downstream_sim::Running {
    let profile = downstream_sim::Profile::from_toml(profile).expect("test profile is valid");
    downstream_sim::start(profile)
        .await
        .expect("a loopback port")
}

fn key() -> (OrderId, IdempotencyKey) {
    let id = OrderId::parse("o-contract").unwrap();
    let key = IdempotencyKey::new(&id, Operation::Charge);
    (id, key)
}

/// A charge against a server answering `status` with `body`.
async fn charge_answered(
    status: &str,
    content_type: &str,
    body: Vec<u8>,
) -> orderflow_downstream::Answer<orderflow_downstream::api::Payment> {
    let base = answering(status, content_type, body).await;
    let api = PaymentApi::new(&base, &Policy::default_policy()).unwrap();
    let (id, key) = key();
    api.charge(&key, &id, 500, "EUR", "tok_ok").await
}

fn assert_off_contract<T: std::fmt::Debug>(answer: &orderflow_downstream::Answer<T>, says: &str) {
    assert_eq!(
        (answer.outcome.class, answer.outcome.certainty),
        (FailureClass::Infrastructure, Certainty::Unknown),
        "{answer:?}"
    );
    assert_eq!(answer.outcome.code.as_deref(), Some(OFF_CONTRACT));
    assert!(answer.body.is_none(), "{answer:?}");
    let what = answer.off_contract.as_deref().unwrap_or_default();
    assert!(what.contains(says), "`{what}` should say `{says}`");
}

#[tokio::test]
async fn a_200_html_page_is_not_a_charge() {
    let answer = charge_answered(
        "200 OK",
        "text/html",
        b"<html><body>Welcome</body></html>".to_vec(),
    )
    .await;
    assert_off_contract(&answer, "200 text/html");
    assert_off_contract(&answer, "not JSON");
}

#[tokio::test]
async fn an_empty_2xx_is_not_a_charge() {
    let answer = charge_answered("201 Created", "application/json", Vec::new()).await;
    assert_off_contract(&answer, "0 bytes");
}

#[tokio::test]
async fn json_of_another_shape_is_not_a_charge() {
    let answer = charge_answered("200 OK", "application/json", br#"{"ok": true}"#.to_vec()).await;
    assert_off_contract(&answer, "not the call's response");
}

#[tokio::test]
async fn a_status_the_contract_does_not_have_for_the_call_is_not_a_charge() {
    // `refunded` is a payment status, but never the answer to a charge.
    for status in ["approved", "refunded"] {
        let body = format!(r#"{{"payment_id": "pay_1", "status": "{status}"}}"#);
        let answer = charge_answered("201 Created", "application/json", body.into_bytes()).await;
        assert_off_contract(&answer, status);
    }
}

#[tokio::test]
async fn a_2xx_past_the_size_cap_is_not_read_and_not_a_charge() {
    let mut body = br#"{"payment_id": "pay_1", "status": "succeeded", "pad": ""#.to_vec();
    body.resize(MAX_ANSWER_BYTES + 10, b'x');
    body.extend_from_slice(b"\"}");
    let answer = charge_answered("201 Created", "application/json", body).await;
    assert_off_contract(&answer, &format!("over {MAX_ANSWER_BYTES} bytes"));
}

#[tokio::test]
async fn the_contract_answer_is_still_a_success() {
    let answer = charge_answered(
        "201 Created",
        "application/json",
        br#"{"payment_id": "pay_1", "status": "succeeded"}"#.to_vec(),
    )
    .await;
    assert!(answer.outcome.is_confirmed_success(), "{answer:?}");
    assert_eq!(answer.body.unwrap().payment_id, "pay_1");
}

#[tokio::test]
async fn a_status_query_answered_by_a_page_is_unknown() {
    let base = answering("200 OK", "text/html", b"<html></html>".to_vec()).await;
    let api = ShippingApi::new(&base, &Policy::default_policy()).unwrap();
    let (id, _) = key();
    let answer = api
        .shipment(&IdempotencyKey::new(&id, Operation::Ship))
        .await;
    assert_off_contract(&answer, "not JSON");
}

#[tokio::test]
async fn a_404_page_on_a_status_query_is_not_the_contracts_not_found() {
    // Only the contract's `{"code": "not_found"}` says the request never
    // landed (safe to re-send); an ingress's 404 page says nothing of it.
    let base = answering("404 Not Found", "text/html", b"<h1>Not Found</h1>".to_vec()).await;
    let api = PaymentApi::new(&base, &Policy::default_policy()).unwrap();
    let (_, key) = key();
    let answer = api.payment(&key).await;
    assert_ne!(
        (answer.outcome.class, answer.outcome.certainty),
        (FailureClass::Transient, Certainty::NotApplied),
        "{answer:?}"
    );
    let sim = simulator("").await;
    let api = PaymentApi::new(sim.base_url(), &Policy::default_policy()).unwrap();
    let answer = api.payment(&key).await;
    assert_eq!(
        (answer.outcome.class, answer.outcome.certainty),
        (FailureClass::Transient, Certainty::NotApplied),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_402_page_is_not_a_refusal() {
    // A refusal releases the stock; only the contract's codes say so.
    let answer = charge_answered(
        "402 Payment Required",
        "text/html",
        b"<h1>402</h1>".to_vec(),
    )
    .await;
    assert_eq!(
        (answer.outcome.class, answer.outcome.certainty),
        (FailureClass::Infrastructure, Certainty::NotApplied),
        "{answer:?}"
    );
    let answer = charge_answered(
        "402 Payment Required",
        "application/json",
        br#"{"code": "card_declined", "message": "declined"}"#.to_vec(),
    )
    .await;
    assert_eq!(answer.outcome.class, FailureClass::BusinessRejection);
}

#[tokio::test]
async fn the_start_up_check_tells_the_api_from_anything_else() {
    let sim = simulator("").await;
    let api = PaymentApi::new(sim.base_url(), &Policy::default_policy()).unwrap();
    assert_eq!(api.check_contract().await, Ok(()));

    // The API in an outage is still the API.
    let outage = simulator("[faults.\"payment.status\"]\nerror_500 = 1.0\n").await;
    let api = PaymentApi::new(outage.base_url(), &Policy::default_policy()).unwrap();
    assert_eq!(api.check_contract().await, Ok(()));

    let page = answering("200 OK", "text/html", b"<html></html>".to_vec()).await;
    let api = PaymentApi::new(&page, &Policy::default_policy()).unwrap();
    let why = api.check_contract().await.unwrap_err();
    assert!(
        why.contains(&page) && why.contains("200 text/html") && why.contains("not_found"),
        "{why}"
    );

    let not_found_page = answering("404 Not Found", "text/html", b"nope".to_vec()).await;
    let api = PaymentApi::new(&not_found_page, &Policy::default_policy()).unwrap();
    let why = api.check_contract().await.unwrap_err();
    assert!(why.contains("404 text/html"), "{why}");

    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let api = PaymentApi::new(&closed, &Policy::default_policy()).unwrap();
    let why = api.check_contract().await.unwrap_err();
    assert!(why.contains("no answer"), "{why}");
}
