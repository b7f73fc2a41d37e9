//! Issue 6's "done when", end to end: with `orderctl` alone an operator
//! takes an escalated payment, a blocked shipment and a malformed message
//! from the exception queues to resolution, every step audited, while the
//! real workers run.

use orderflow_testkit::{Fleet, FleetOptions, Order, OrderState, PaymentState, ReservationState};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// `orderctl ARGS --namespace NS` as `alice`; panics with its output unless
/// it exits 0; returns stdout.
fn orderctl(fleet: &Fleet, args: &[&str]) -> String {
    let output = fleet.orderctl(args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "orderctl {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// The ids of the messages `exceptions peek` shows for `order_id`.
fn parked_ids(fleet: &Fleet, stage: &str, order_id: &str) -> Vec<String> {
    let peeked = json(&orderctl(
        fleet,
        &[
            "exceptions",
            "peek",
            "--stage",
            stage,
            "-n",
            "100",
            "--json",
        ],
    ));
    let mut ids = Vec::new();
    collect_ids(&peeked, order_id, &mut ids);
    ids
}

fn collect_ids(value: &Value, order_id: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if map.get("order_id").and_then(Value::as_str) == Some(order_id)
                && let Some(id) = map.get("id").and_then(Value::as_str)
            {
                out.push(id.to_owned());
            }
            map.values().for_each(|v| collect_ids(v, order_id, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_ids(v, order_id, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resolves_an_escalated_payment_a_blocked_shipment_and_a_malformed_order() {
    // Payment status answers are lost, so a slow payment cannot be learnt
    // and is escalated after the short ambiguity window; ZZ cannot be
    // shipped to.
    let profile = "[payment]\nprocessing_ms = 500\n\
                   [shipping]\nunsupported_countries = [\"ZZ\"]\nfulfilment_step_ms = 100\n\
                   [faults.\"payment.status\"]\nerror_500 = 1.0\n";
    let fleet = Fleet::start(
        FleetOptions::new()
            .policy_fixture("payment-short-ambiguity")
            .profile(profile),
    )
    .await;
    let slow = fleet
        .place(&Order::new("op-slow").token("tok_processing"))
        .await;
    let far = fleet.place(&Order::new("op-far").country("ZZ")).await;
    let bad = Order::new("op-bad").country("").to_json();
    fleet
        .publish_raw(
            "order.placed",
            bad.to_string().into_bytes(),
            Some("placed.op-bad".into()),
        )
        .await;

    let escalated = fleet
        .wait_state(&slow, &[OrderState::Escalated], WAIT)
        .await;
    assert_eq!(escalated.reason.as_deref(), Some("payment_unresolved"));
    fleet.wait_state(&far, &[OrderState::Blocked], WAIT).await;

    // What is stuck, and why.
    let listing = orderctl(&fleet, &["exceptions", "list", "--json"]);
    for reason in ["payment_unresolved", "unsupported_destination", "malformed"] {
        assert!(listing.contains(reason), "{reason} not listed:\n{listing}");
    }

    // The escalated payment: the operator checked the provider and it did
    // charge. Resolve it, then clear its exception message.
    let ledger = fleet.ledger().await;
    let payment = ledger.payments.iter().find(|p| p.order_id == slow).unwrap();
    assert_eq!(payment.state, PaymentState::Succeeded);
    orderctl(
        &fleet,
        &[
            "order",
            "resolve",
            &slow,
            "--stage",
            "payment",
            "--outcome",
            "succeeded",
            "--payment-id",
            &payment.id,
            "--reason",
            "provider dashboard shows it succeeded",
        ],
    );
    for id in parked_ids(&fleet, "payment", &slow) {
        orderctl(
            &fleet,
            &[
                "exceptions",
                "discard",
                "--stage",
                "payment",
                "--id",
                &id,
                "--reason",
                "resolved by hand",
            ],
        );
    }

    // The blocked shipment: the business refunds rather than ships.
    orderctl(
        &fleet,
        &[
            "order",
            "unblock",
            &far,
            "--decision",
            "refund",
            "--reason",
            "we do not ship to ZZ",
        ],
    );
    for id in parked_ids(&fleet, "shipping", &far) {
        orderctl(
            &fleet,
            &[
                "exceptions",
                "discard",
                "--stage",
                "shipping",
                "--id",
                &id,
                "--reason",
                "refunded",
            ],
        );
    }

    // The malformed order: fixed and sent again.
    let bad_ids = parked_ids(&fleet, "inventory", "op-bad");
    assert_eq!(bad_ids.len(), 1, "one malformed message parked");
    orderctl(
        &fleet,
        &[
            "exceptions",
            "edit",
            "--stage",
            "inventory",
            "--id",
            &bad_ids[0],
            "--set",
            "shipping_address.country=DE",
        ],
    );

    fleet
        .wait_state(&slow, &[OrderState::Delivered], WAIT)
        .await;
    fleet.wait_state(&far, &[OrderState::Cancelled], WAIT).await;
    fleet
        .wait_state("op-bad", &[OrderState::Delivered], WAIT)
        .await;

    let ledger = fleet.ledger().await;
    let refunded = ledger.payments.iter().find(|p| p.order_id == far).unwrap();
    assert_eq!(refunded.state, PaymentState::Refunded);
    let released = ledger
        .reservations
        .iter()
        .find(|r| r.order_id == far)
        .unwrap();
    assert_eq!(released.state, ReservationState::Released);

    // Every step is audited with the operator as the actor.
    for id in [&slow, &far] {
        let shown = orderctl(&fleet, &["order", "show", id, "--json"]);
        assert!(
            shown.contains("operator:alice"),
            "{id} has no operator entry:\n{shown}"
        );
    }
    let listing = json(&orderctl(&fleet, &["exceptions", "list", "--json"]));
    let left: Vec<&Value> = listing["groups"].as_array().unwrap().iter().collect();
    assert!(left.is_empty(), "exception queues not cleared: {left:?}");
    fleet.assert_invariants().await;
}
