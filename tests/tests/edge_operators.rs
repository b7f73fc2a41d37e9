//! docs/reliability.md, items 3 and 8: an operator's retry and replay at the edges,
//! acted out with `orderctl` as an operator runs it and judged against the
//! simulator's ledger.
//!
//! - `order retry` of an order whose operation may have been sent: the
//!   stage asks the provider by key first and goes on from what it learns
//!   (never sends the charge again, never compensates a shipment as if it
//!   had not been made); when the provider cannot say, the retry is refused
//!   (exit 3) with the reason.
//! - `exceptions replay` keeps a step's first attempt, so a copy parked
//!   again after a replay cannot be replayed past the replay window.

use orderflow_broker::{Meta, Publisher};
use orderflow_testkit::{
    Cancel, Endpoint, Fleet, FleetOptions, Order, OrderState, PaymentState, ReservationState,
    Stage, fixtures,
};
use serde_json::Value;
use std::process::Output;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// No faults anywhere: the provider answers again.
const HEALED: &str = "[shipping]\nfulfilment_step_ms = 100\n";

fn retry(fleet: &Fleet, order: &str, stage: &str) -> Output {
    fleet.orderctl(&[
        "order",
        "retry",
        order,
        "--stage",
        stage,
        "--reason",
        "the provider answers again",
    ])
}

/// `text` with `key = value` in `[section]`: the key's line replaced, or
/// added to the section (the section added when there is none).
fn set_key(text: &str, section: &str, key: &str, value: &str) -> String {
    let header = format!("[{section}]");
    let mut out = Vec::new();
    let (mut inside, mut done) = (false, false);
    for line in text.lines() {
        if line.starts_with('[') {
            if inside && !done {
                out.push(format!("{key} = {value}"));
                done = true;
            }
            inside = line.trim() == header;
        }
        if inside && !done && line.split('=').next().map(str::trim) == Some(key) {
            out.push(format!("{key} = {value}"));
            done = true;
            continue;
        }
        out.push(line.to_owned());
    }
    if !done {
        if !inside {
            out.push(header);
        }
        out.push(format!("{key} = {value}"));
    }
    out.join("\n") + "\n"
}

fn options(policy: String) -> FleetOptions {
    let mut options = FleetOptions::new();
    options.policy_name = "edge-operators".into();
    options.policy = policy;
    options
}

/// (a) A charge applied whose answer was lost, and whose status could not
/// be learnt: escalated `payment_unresolved`. The provider answers again;
/// the operator retries. The stage asks by key first and goes on from the
/// charge it finds: no second charge request, exactly one charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_payment_asks_the_provider_before_charging_again() {
    let profile = "[faults.\"payment.charge\"]\ntimeout_after_apply = 1.0\nhang_ms = 1000\n\
                   [faults.\"payment.status\"]\nerror_500 = 1.0\n";
    let mut fleet = Fleet::start(
        FleetOptions::new()
            .policy_fixture(fixtures::PAYMENT_SHORT_AMBIGUITY)
            .profile(profile),
    )
    .await;
    let id = fleet.place(&Order::new("edge-retry-pay")).await;
    let escalated = fleet.wait_state(&id, &[OrderState::Escalated], WAIT).await;
    assert_eq!(escalated.reason.as_deref(), Some("payment_unresolved"));

    fleet.set_profile(HEALED).await;
    let before = fleet.ledger().await;
    let output = retry(&fleet, &id, "payment");
    assert!(
        output.status.success(),
        "the retry was refused: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    fleet.wait_state(&id, &[OrderState::Delivered], WAIT).await;

    let ledger = fleet.ledger().await;
    assert_eq!(
        ledger.calls_to(Endpoint::PaymentCharge),
        before.calls_to(Endpoint::PaymentCharge),
        "the retry sent the charge again instead of asking the provider first"
    );
    assert!(
        ledger.calls_to(Endpoint::PaymentStatus) > before.calls_to(Endpoint::PaymentStatus),
        "the retry did not ask the provider"
    );
    let charges: Vec<_> = ledger
        .payments
        .iter()
        .filter(|p| p.order_id == id)
        .collect();
    assert_eq!(charges.len(), 1, "exactly one charge: {charges:?}");
    assert_eq!(charges[0].state, PaymentState::Succeeded);
    fleet.assert_invariants().await;
}

/// (b) The same with a cancel requested by the customer while the payment
/// was escalated: the retried stage asks first, finds the charge, and
/// refunds it before releasing the stock — it does not release and cancel
/// as if nothing had been charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_payment_with_a_cancel_refunds_the_charge_it_finds() {
    let profile = "[faults.\"payment.charge\"]\ntimeout_after_apply = 1.0\nhang_ms = 1000\n\
                   [faults.\"payment.status\"]\nerror_500 = 1.0\n";
    let mut fleet = Fleet::start(
        FleetOptions::new()
            .policy_fixture(fixtures::PAYMENT_SHORT_AMBIGUITY)
            .profile(profile),
    )
    .await;
    let id = fleet.place(&Order::new("edge-retry-pay-cancel")).await;
    let escalated = fleet.wait_state(&id, &[OrderState::Escalated], WAIT).await;
    assert_eq!(escalated.reason.as_deref(), Some("payment_unresolved"));
    fleet
        .cancel(&Cancel::new(&id).reason("changed my mind"))
        .await;
    fleet
        .wait_for(&id, "cancel requested", WAIT, |o| {
            o.cancel_requested.is_some()
        })
        .await;

    fleet.set_profile(HEALED).await;
    let before = fleet.ledger().await;
    let output = retry(&fleet, &id, "payment");
    assert!(
        output.status.success(),
        "the retry was refused: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cancelled = fleet.wait_state(&id, &[OrderState::Cancelled], WAIT).await;
    assert!(
        cancelled
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("changed my mind")),
        "{cancelled:?}"
    );

    let ledger = fleet.ledger().await;
    let charges: Vec<_> = ledger
        .payments
        .iter()
        .filter(|p| p.order_id == id)
        .collect();
    assert_eq!(
        charges.iter().map(|p| p.state).collect::<Vec<_>>(),
        [PaymentState::Refunded],
        "the one charge is refunded; history: {}",
        fleet.history(&id).await
    );
    assert_eq!(
        ledger.calls_to(Endpoint::PaymentCharge),
        before.calls_to(Endpoint::PaymentCharge),
        "the retry charged again"
    );
    let reservation = ledger
        .reservations
        .iter()
        .find(|r| r.order_id == id)
        .unwrap();
    assert_eq!(reservation.state, ReservationState::Released);
    fleet.assert_invariants().await;
}

/// (b) A shipment accepted whose answer was lost, its status unknown past
/// the window: escalated `shipping_unresolved`. The customer cancels
/// meanwhile. On the operator's retry the stage must not refund and
/// release as if nothing had shipped: it asks the carrier, finds the
/// shipment, and blocks the order for a person (`cancel_after_shipment`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_shipment_with_a_cancel_is_not_compensated_as_never_sent() {
    let policy = set_key(
        &fixtures::policy(fixtures::FAST),
        "stages.shipping",
        "ambiguity_window",
        "\"2s\"",
    );
    let profile = "[faults.\"shipping.create\"]\ntimeout_after_apply = 1.0\nhang_ms = 1000\n\
                   [faults.\"shipping.status\"]\nerror_500 = 1.0\n";
    let mut fleet = Fleet::start(options(policy).profile(profile)).await;
    let id = fleet.place(&Order::new("edge-retry-ship")).await;
    let escalated = fleet.wait_state(&id, &[OrderState::Escalated], WAIT).await;
    assert_eq!(escalated.reason.as_deref(), Some("shipping_unresolved"));
    fleet
        .wait_ledger("the shipment", WAIT, |l| {
            l.shipments.iter().any(|s| s.order_id == id)
        })
        .await;

    // The customer cancels the escalated order: recorded on it, the
    // message parked for a person.
    fleet
        .cancel(&Cancel::new(&id).reason("changed my mind"))
        .await;
    fleet
        .wait_for(&id, "cancel requested", WAIT, |o| {
            o.cancel_requested.is_some()
        })
        .await;

    fleet.set_profile(HEALED).await;
    let output = retry(&fleet, &id, "shipping");
    assert!(
        output.status.success(),
        "the retry was refused: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let settled = fleet
        .wait_state(&id, &[OrderState::Blocked, OrderState::Cancelled], WAIT)
        .await;

    let ledger = fleet.ledger().await;
    let payment = ledger.payments.iter().find(|p| p.order_id == id).unwrap();
    let reservation = ledger
        .reservations
        .iter()
        .find(|r| r.order_id == id)
        .unwrap();
    assert_eq!(
        (settled.state, payment.state, reservation.state),
        (
            OrderState::Blocked,
            PaymentState::Succeeded,
            ReservationState::Committed
        ),
        "the shipment stands (its stock sold), so nothing may be refunded or released on the retry; history: {}",
        fleet.history(&id).await
    );
    assert_eq!(settled.reason.as_deref(), Some("cancel_after_shipment"));
    assert_eq!(
        ledger.shipments.iter().filter(|s| s.order_id == id).count(),
        1
    );
    // The block records the shipment, so a person's refund keeps the stock
    // the carrier holds.
    assert!(
        settled.downstream_ids.contains_key(&Stage::Shipping),
        "the blocked order does not name its shipment: {settled:?}"
    );
    fleet.assert_invariants().await;
}

/// (c) The provider cannot say what happened: it answers no status query.
/// A retry could only send the charge again, so it is refused (exit 3),
/// saying why and what to do instead; nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_refused_when_the_provider_cannot_be_asked() {
    let policy = set_key(
        &fixtures::policy(fixtures::PAYMENT_SHORT_AMBIGUITY),
        "downstreams.payment",
        "status_query",
        "false",
    );
    let policy = set_key(
        &policy,
        "stages.payment",
        "status_poll",
        "{ interval = \"100ms\", limit = 0 }",
    );
    let profile = "[payment]\nstatus_query = false\n\
                   [faults.\"payment.charge\"]\ntimeout_after_apply = 1.0\nhang_ms = 1000\n";
    let mut fleet = Fleet::start(options(policy).profile(profile)).await;
    let id = fleet.place(&Order::new("edge-retry-blind")).await;
    let escalated = fleet.wait_state(&id, &[OrderState::Escalated], WAIT).await;
    assert_eq!(escalated.reason.as_deref(), Some("payment_unresolved"));

    fleet.set_profile("[payment]\nstatus_query = false\n").await;
    let before = fleet.ledger().await;
    let output = retry(&fleet, &id, "payment");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "the retry was not refused: {}{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    for words in ["status quer", "order resolve"] {
        assert!(
            stderr.contains(words),
            "the refusal lacks `{words}`: {stderr}"
        );
    }
    let order = fleet.expect_order(&id).await;
    assert_eq!(order.state, OrderState::Escalated, "the order moved");
    let ledger = fleet.ledger().await;
    assert_eq!(
        ledger.calls_to(Endpoint::PaymentCharge),
        before.calls_to(Endpoint::PaymentCharge)
    );
    assert_eq!(
        ledger.payments.iter().filter(|p| p.order_id == id).count(),
        1
    );
    fleet.assert_invariants().await;
}

/// (c) The provider may have forgotten the charge's key: the order was
/// placed longer ago than `key_retention` (3 s here). Asking would find
/// nothing and a resend would be a new charge, so the retry is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_refused_once_the_provider_may_have_forgotten_the_key() {
    let retention = Duration::from_secs(3);
    let mut policy = fixtures::policy(fixtures::PAYMENT_SHORT_AMBIGUITY);
    for (section, key) in [
        ("downstreams.payment", "key_retention"),
        ("stages.payment", "deadline"),
        ("exceptions", "replay_window"),
    ] {
        policy = set_key(&policy, section, key, "\"3s\"");
    }
    let profile = "[faults.\"payment.charge\"]\ntimeout_after_apply = 1.0\nhang_ms = 1000\n\
                   [faults.\"payment.status\"]\nerror_500 = 1.0\n";
    let mut fleet = Fleet::start(options(policy).profile(profile)).await;
    let placed = Instant::now();
    let id = fleet.place(&Order::new("edge-retry-forgotten")).await;
    let escalated = fleet.wait_state(&id, &[OrderState::Escalated], WAIT).await;
    assert!(
        escalated
            .last_outcomes
            .get(&Stage::Payment)
            .is_some_and(|o| o.certainty == orderflow_core::Certainty::Unknown),
        "escalated without an unknown charge: {escalated:?}"
    );

    fleet.set_profile(HEALED).await;
    tokio::time::sleep((retention + Duration::from_millis(500)).saturating_sub(placed.elapsed()))
        .await;
    let before = fleet.ledger().await;
    let output = retry(&fleet, &id, "payment");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "the retry was not refused: {}{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    for words in ["downstreams.payment.key_retention", "order resolve"] {
        assert!(
            stderr.contains(words),
            "the refusal lacks `{words}`: {stderr}"
        );
    }
    assert_eq!(
        fleet.expect_order(&id).await.state,
        OrderState::Escalated,
        "the order moved"
    );
    assert_eq!(
        fleet.ledger().await.calls_to(Endpoint::PaymentCharge),
        before.calls_to(Endpoint::PaymentCharge)
    );
    fleet.assert_invariants().await;
}

/// Item 8: a replayed step keeps its first attempt. A step is parked, replayed
/// within the window, parked again; a second replay after the window (4 s
/// from the first attempt, not from the replay) is skipped with the window
/// as the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_parked_again_after_a_replay_cannot_be_replayed_past_the_window() {
    let window = Duration::from_secs(4);
    let policy = set_key(
        &fixtures::policy(fixtures::FAST),
        "exceptions",
        "replay_window",
        "\"4s\"",
    );
    let fleet = Fleet::start(options(policy)).await;

    // A step for an order the store does not know parks at once as
    // `order_not_found`, and again each time it is replayed.
    let ghost = "edge-ghost";
    let publisher = Publisher::connect(&orderflow_testkit::amqp_url(), "edge-operators")
        .await
        .expect("a publisher");
    let body = serde_json::json!({
        "schema": "orderflow.step/v1",
        "order_id": ghost,
        "stage": "payment",
    });
    let first_attempt = Instant::now();
    publisher
        .to_queue(
            &fleet.spec().names().work_queue(Stage::Payment),
            body.to_string().into_bytes(),
            Meta {
                message_id: Some("edge-ghost-step".into()),
                order_id: Some(ghost.into()),
                timestamp: u64::try_from(jiff::Timestamp::now().as_second()).ok(),
                ..Meta::default()
            },
        )
        .await
        .expect("published");
    publisher.close().await;
    let parked = parked_id(&fleet, ghost).await;

    // Replayed near the end of the window: sent, and parked again.
    tokio::time::sleep((window * 3 / 4).saturating_sub(first_attempt.elapsed())).await;
    let first = replay(&fleet, &parked);
    assert_eq!(first["sent"], 1, "the first replay sent nothing: {first}");
    // The replay acknowledged the original: what is parked now came back.
    let again = parked_id(&fleet, ghost).await;

    // Past the window since the first attempt (but not since the replay).
    tokio::time::sleep(
        (window + Duration::from_millis(1500)).saturating_sub(first_attempt.elapsed()),
    )
    .await;
    let second = replay(&fleet, &again);
    let message = &second["messages"][0];
    assert_eq!(
        (second["sent"].as_u64(), message["outcome"].as_str()),
        (Some(0), Some("skipped")),
        "a copy parked after a replay was replayed past the window: {second}"
    );
    let detail = message["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("exceptions.replay_window"),
        "skipped for another reason: {detail}"
    );
}

/// `exceptions replay --stage payment --id ID --json`, whatever its exit
/// status (a skipped message exits 2).
fn replay(fleet: &Fleet, id: &str) -> Value {
    let output = fleet.orderctl(&[
        "exceptions",
        "replay",
        "--stage",
        "payment",
        "--id",
        id,
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "replay printed no report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The id of the step for `order` parked in the payment exception queue
/// as `order_not_found`.
async fn parked_id(fleet: &Fleet, order: &str) -> String {
    let parked = fleet
        .wait_parked(Stage::Payment, "order_not_found step", WAIT, |p| {
            p.order_id().as_deref() == Some(order) && p.reason() == Some("order_not_found")
        })
        .await;
    parked.meta.message_id.expect("a parked step has an id")
}
