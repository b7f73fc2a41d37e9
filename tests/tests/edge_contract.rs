//! Safety at the edges (docs/reliability.md): what a downstream says counts only when
//! it is the contract's answer (docs/downstream-api.md), and sizes and
//! secrets at the process's edges.
//!
//! Item 1: `ORDERFLOW_PAYMENT_URL` pointing at something that answers every
//! request `200 text/html` (a wrong URL, an ingress's default page) must
//! never let an order reach `paid` without a payment in the simulator's
//! ledger: the payment worker stays unready, saying which URL answered
//! what, and a URL that goes bad after start-up leaves the order
//! `payment_pending`, never paid on a guess. So does a status answer
//! about another order (a cache that ignores the key).
//!
//! Item 10: a producer message over the size limit is parked as
//! malformed; a password with URL-special characters never reaches the
//! start-up error.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use orderflow_testkit::{Fleet, FleetOptions, Order, OrderState, Stage, WorkerKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(30);

/// A "payment API" that is not one: every request gets `200 text/html`
/// until [`Impostor::forward`] makes it pass requests on to the simulator,
/// as the right URL would.
struct Impostor {
    url: String,
    forwarding: Arc<AtomicBool>,
    misanswering: Arc<AtomicBool>,
    sim: Arc<OnceLock<String>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Upstream {
    forwarding: Arc<AtomicBool>,
    /// A cache that ignores the key: every status query gets another
    /// order's succeeded charge.
    misanswering: Arc<AtomicBool>,
    /// The simulator's URL, known once the fleet has started.
    sim: Arc<OnceLock<String>>,
    http: reqwest::Client,
}

impl Impostor {
    async fn start(forwarding: bool) -> Impostor {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let forwarding = Arc::new(AtomicBool::new(forwarding));
        let misanswering = Arc::new(AtomicBool::new(false));
        let sim = Arc::new(OnceLock::new());
        let upstream = Upstream {
            forwarding: forwarding.clone(),
            misanswering: misanswering.clone(),
            sim: sim.clone(),
            http: reqwest::Client::new(),
        };
        let app = Router::new().fallback(answer).with_state(upstream);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Impostor {
            url,
            forwarding,
            misanswering,
            sim,
            server,
        }
    }

    /// Where forwarded requests go.
    fn behind(&self, sim: &str) {
        let _ = self.sim.set(sim.to_owned());
    }

    /// From now on, requests go to the simulator.
    fn forward(&self, on: bool) {
        self.forwarding.store(on, Ordering::SeqCst);
    }

    /// From now on, status queries get another order's succeeded charge.
    fn misanswer(&self, on: bool) {
        self.misanswering.store(on, Ordering::SeqCst);
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn answer(
    State(upstream): State<Upstream>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sim = upstream
        .sim
        .get()
        .filter(|_| upstream.forwarding.load(Ordering::SeqCst));
    let Some(sim) = sim else {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>",
        )
            .into_response();
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if method == Method::GET && upstream.misanswering.load(Ordering::SeqCst) {
        let other = r#"{"payment_id": "pay_999999", "order_id": "ord-someone-else", "status": "succeeded"}"#;
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            other,
        )
            .into_response();
    }
    let mut request = upstream
        .http
        .request(method, format!("{sim}{path}"))
        .body(body);
    for name in [header::CONTENT_TYPE.as_str(), "idempotency-key"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
            let bytes = response.bytes().await.unwrap_or_default();
            let mut out = Response::new(Body::from(bytes));
            *out.status_mut() = status;
            if let Some(content_type) = content_type {
                out.headers_mut().insert(header::CONTENT_TYPE, content_type);
            }
            out
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// A fleet whose payment worker calls the impostor as its payment API;
/// the fleet's start does not wait for it to be ready.
fn payment_behind(impostor: &Impostor) -> FleetOptions {
    FleetOptions::new()
        .worker_env(WorkerKind::Payment, "ORDERFLOW_PAYMENT_URL", &impostor.url)
        .expect_unready(WorkerKind::Payment)
}

fn payments_of(ledger: &orderflow_testkit::Ledger, id: &str) -> usize {
    ledger.payments.iter().filter(|p| p.order_id == id).count()
}

/// The states an order reaches only after its charge succeeded.
const CHARGED: [OrderState; 5] = [
    OrderState::Paid,
    OrderState::ShippingPending,
    OrderState::ShipmentAccepted,
    OrderState::Delivered,
    OrderState::Blocked,
];

/// Waits until the order is `payment_pending` or past a charge, and
/// insists on `payment_pending` with no payment in the ledger: an order
/// must wait for a real answer, never be paid without a charge.
async fn waits_pending_unpaid(fleet: &Fleet, id: &str) -> orderflow_testkit::OrderRecord {
    let record = fleet
        .wait_for(id, "payment_pending or charged", SETTLE, |r| {
            r.state == OrderState::PaymentPending || CHARGED.contains(&r.state)
        })
        .await;
    assert_eq!(
        (record.state, payments_of(&fleet.ledger().await, id)),
        (OrderState::PaymentPending, 0),
        "{id} must wait for a real answer, not be charged-less paid; history: {}",
        fleet.history(id).await
    );
    record
}

/// Once the payment API answers as the contract says: the order is
/// delivered, charged once, and I1–I9 hold against the ledger.
async fn delivered_charged_once(fleet: &Fleet, id: &str) {
    fleet.wait_state(id, &[OrderState::Delivered], SETTLE).await;
    assert_eq!(payments_of(&fleet.ledger().await, id), 1);
    fleet.settle_and_check(SETTLE).await;
}

/// Item 1, as reproduced: the payment URL answers every request `200
/// text/html` from the start. The payment worker must stay unready and say
/// why, the order must wait in `reserved` (its reservation in the ledger,
/// no payment), and once the URL answers as the contract says the worker
/// becomes ready and the order is charged and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_url_answering_200_html_never_ships_an_unpaid_order() {
    let impostor = Impostor::start(false).await;
    let mut fleet = Fleet::start(payment_behind(&impostor)).await;
    impostor.behind(fleet.sim_url());
    fleet
        .set_profile("[shipping]\nfulfilment_step_ms = 100\n")
        .await;
    let index = 0;

    let id = fleet.place(&Order::new("ord-html-payment")).await;
    // Positive signal either way: the order was charged-or-not while the
    // payment worker said whether it is ready.
    let deadline = Instant::now() + SETTLE;
    let reason = loop {
        let record = fleet.order(&id).await;
        let ledger = fleet.ledger().await;
        if let Some(record) = &record
            && CHARGED.contains(&record.state)
        {
            panic!(
                "{id} reached {} with {} payment(s) in the ledger (the payment URL answers every request 200 text/html); history: {}",
                record.state,
                payments_of(&ledger, &id),
                fleet.history(&id).await
            );
        }
        let reserved = record
            .as_ref()
            .is_some_and(|r| r.state == OrderState::Reserved)
            && ledger.reservations.iter().any(|r| r.order_id == id);
        let readyz = fleet.readyz(WorkerKind::Payment, index).await;
        // Earlier answers say it is starting or checking; wait for the
        // check's verdict.
        if reserved
            && let Some((503, body)) = &readyz
            && body.contains(&impostor.url)
        {
            break body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{id}: not reserved with an unready payment worker within {SETTLE:?}; readyz {readyz:?}; history: {}",
            fleet.history(&id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(payments_of(&fleet.ledger().await, &id), 0);
    // The reason names the setting, the URL and what it answered.
    assert!(
        reason.contains("ORDERFLOW_PAYMENT_URL") && reason.contains("text/html"),
        "the readiness reason should name the URL and what it answered: {reason}"
    );
    let log = fleet.worker_log(WorkerKind::Payment, index);
    assert!(
        log.contains(&impostor.url) && log.contains("text/html"),
        "the payment worker's log should say which URL answered what:\n{log}"
    );

    // The right API behind the same URL: ready again, and the order runs.
    impostor.forward(true);
    fleet
        .wait_worker_ready(WorkerKind::Payment, index, SETTLE)
        .await;
    delivered_charged_once(&fleet, &id).await;
}

/// Item 1, later: the URL passed the start-up check, then answers every
/// request `200 text/html`. The charge's outcome is unknown, so the order
/// waits `payment_pending` (never `paid` without a ledger payment), with
/// the off-contract answer in its audit; once the real API answers again
/// the re-check finds no charge, charges and delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_url_that_turns_to_200_html_leaves_the_order_pending_not_paid() {
    let impostor = Impostor::start(true).await;
    let mut fleet = Fleet::start(payment_behind(&impostor)).await;
    impostor.behind(fleet.sim_url());
    fleet
        .set_profile("[shipping]\nfulfilment_step_ms = 100\n")
        .await;
    let index = 0;
    fleet
        .wait_worker_ready(WorkerKind::Payment, index, SETTLE)
        .await;

    impostor.forward(false);
    let id = fleet.place(&Order::new("ord-html-later")).await;
    let record = waits_pending_unpaid(&fleet, &id).await;
    // What an operator sees: the order's reason says the answer was not
    // the contract's.
    let reason = record.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("unknown") && reason.contains("off_contract"),
        "{id}: the pending reason should say the outcome is unknown and why: {reason:?}"
    );

    impostor.forward(true);
    delivered_charged_once(&fleet, &id).await;
}

/// A cache in front of the payment API that ignores the key answers every
/// status query with another order's succeeded charge. This order's charge
/// was answered 500 (nothing charged), so it is asked about; an answer
/// about another order says nothing of it: the order waits
/// `payment_pending`, never paid without a charge, and is charged once the
/// queries reach the API again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_answer_about_another_order_never_pays_this_one() {
    let impostor = Impostor::start(true).await;
    let mut fleet = Fleet::start(payment_behind(&impostor)).await;
    impostor.behind(fleet.sim_url());
    fleet
        .set_profile("[faults.\"payment.charge\"]\nerror_500 = 1.0\n")
        .await;
    fleet
        .wait_worker_ready(WorkerKind::Payment, 0, SETTLE)
        .await;

    impostor.misanswer(true);
    let id = fleet.place(&Order::new("ord-cached-status")).await;
    waits_pending_unpaid(&fleet, &id).await;

    impostor.misanswer(false);
    fleet
        .set_profile("[shipping]\nfulfilment_step_ms = 100\n")
        .await;
    delivered_charged_once(&fleet, &id).await;
}

/// Item 10 (a): a producer message past `broker.max_message_bytes` (1 MiB
/// by default) is parked in the inventory exception queue as `malformed`,
/// saying its size, and never decoded: no order is made of it, however
/// valid its JSON. The orders around it go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_message_over_the_size_limit_is_parked_undecoded() {
    let fleet = Fleet::start(FleetOptions::new()).await;
    let limit = fleet.policy().broker.max_message_bytes;
    let mut huge = Order::new("ord-huge").to_json();
    // Valid in every field the contract checks; an unknown field carries
    // the bulk (producers may add fields; they are ignored).
    huge["padding"] = serde_json::Value::String("A".repeat(limit + limit / 2));
    let bytes = serde_json::to_vec(&huge).expect("json serializes");
    fleet.publish_malformed(&bytes).await;
    let after = fleet.place(&Order::new("ord-after-huge")).await;

    let parked = fleet
        .wait_parked(Stage::Inventory, "the oversized order", SETTLE, |p| {
            p.body.len() == bytes.len()
        })
        .await;
    assert_eq!(parked.reason(), Some("malformed"));
    let why = parked.validation_errors().unwrap_or_default();
    assert!(
        why.contains(&format!("{} bytes", bytes.len())) && why.contains("max_message_bytes"),
        "the reason should say the size and the limit: {why}"
    );
    assert!(
        fleet.order("ord-huge").await.is_none(),
        "an oversized message must not become an order"
    );
    fleet
        .wait_state(&after, &[OrderState::Delivered], SETTLE)
        .await;
    fleet.settle_and_check(SETTLE).await;
}
