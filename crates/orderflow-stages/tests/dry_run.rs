//! A dry run says exactly what the stage does: for every row of the stage
//! table (docs/design.md §4) and every cancel case (docs/stage-logic.md),
//! the stage runs for real — its downstream the simulator answering as the
//! row says, the retry budget in the real Redis — and the effect it applies
//! equals what `foresee` (the replay's dry run) predicts on the same order
//! for the same answer. The stage table's pure path alone is unit-tested in
//! `src/route.rs`.

use downstream_sim::Profile;
use orderflow_core::message::{OrderId, OrderPlaced};
use orderflow_core::{Certainty, FailureClass, OrderState, Outcome, Policy, Stage};
use orderflow_downstream::{IdempotencyKey, Operation};
use orderflow_runtime::{Check, Effect, Emission, Env, Job, StageLogic, StepMessage};
use orderflow_stages::operation::Shape;
use orderflow_stages::{
    Downstreams, Foresight, InventoryStage, PaymentStage, ShippingStage, Urls, foresee,
};
use orderflow_store::{OrderRecord, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const REDIS_URL: &str = orderflow_settings::DEFAULT_REDIS_URL;

/// Quick status polls and retries, so a row takes a second at most.
const POLICY: &str = r#"
[stages.inventory]
status_poll = { interval = "50ms", limit = 2 }
[stages.payment]
status_poll = { interval = "50ms", limit = 2 }
[stages.shipping]
status_poll = { interval = "50ms", limit = 2 }
"#;

/// How a row's order stands before the delivery.
struct Row {
    name: &'static str,
    stage: Stage,
    /// The simulator's profile (faults, stock, refused countries).
    profile: &'static str,
    /// The policy over the default; [`POLICY`] when empty.
    policy: &'static str,
    state: OrderState,
    token: &'static str,
    sku: &'static str,
    country: &'static str,
    cancel: bool,
    /// Made at the simulator first, with the order's own keys, and
    /// recorded on the order (what earlier stages or runs did).
    made: &'static [Operation],
    delivery: Delivery,
    /// How the downstream answers the stage's operation (`None`: the row
    /// calls nothing).
    answer: Option<(FailureClass, Certainty, &'static str)>,
}

#[derive(Clone, Copy)]
enum Delivery {
    Step,
    Cancel,
    Deadline,
}

const ROW: Row = Row {
    name: "",
    stage: Stage::Inventory,
    profile: "",
    policy: "",
    state: OrderState::Received,
    token: "tok_ok",
    sku: "SKU-1",
    country: "NL",
    cancel: false,
    made: &[],
    delivery: Delivery::Step,
    answer: None,
};

use Certainty::*;
use FailureClass::*;
use OrderState::*;

fn rows() -> Vec<Row> {
    vec![
        // docs/design.md §4, the stage table.
        Row {
            name: "inventory: reserved → payment",
            answer: Some((Success, Applied, "reserved")),
            ..ROW
        },
        Row {
            name: "inventory: insufficient stock → rejected",
            profile: "[inventory]\nstock = { \"SKU-SCARCE\" = 0 }\n",
            sku: "SKU-SCARCE",
            answer: Some((BusinessRejection, NotApplied, "insufficient_stock")),
            ..ROW
        },
        Row {
            name: "inventory: overloaded → retried within budget, then deferred",
            profile: "[faults.\"inventory.reserve\"]\nunavailable_503 = 1.0\n",
            policy: "[downstreams.inventory]\nretry = { max_attempts = 3, base = \"10ms\", cap = \"20ms\", jitter = false }\n",
            answer: Some((Overloaded, NotApplied, "unavailable")),
            ..ROW
        },
        Row {
            name: "inventory: a deferred retry finds the order cancelled → released",
            state: InventoryPending,
            cancel: true,
            made: &[Operation::Reserve],
            answer: Some((Success, Applied, "reserved")),
            ..ROW
        },
        Row {
            name: "payment: authorised → paid → shipping",
            stage: Stage::Payment,
            state: Reserved,
            made: &[Operation::Reserve],
            answer: Some((Success, Applied, "succeeded")),
            ..ROW
        },
        Row {
            name: "payment: declined → rejected, reservation released",
            stage: Stage::Payment,
            state: Reserved,
            token: "tok_declined",
            made: &[Operation::Reserve],
            answer: Some((BusinessRejection, NotApplied, "card_declined")),
            ..ROW
        },
        Row {
            name: "payment: processing → asked, payment_pending",
            stage: Stage::Payment,
            profile: "[payment]\nprocessing_ms = 60000\n",
            state: Reserved,
            token: "tok_processing",
            made: &[Operation::Reserve],
            answer: Some((Success, Unknown, "processing")),
            ..ROW
        },
        Row {
            name: "payment: unknown at a provider without status query or keys → escalated",
            stage: Stage::Payment,
            profile: "[faults.\"payment.charge\"]\nerror_500 = 1.0\n",
            policy: "[downstreams.payment]\nstatus_query = false\nidempotent = false\n[stages.payment]\nstatus_poll = { interval = \"50ms\", limit = 0 }\n",
            state: Reserved,
            made: &[Operation::Reserve],
            answer: Some((Transient, Unknown, "internal")),
            ..ROW
        },
        Row {
            name: "shipping: accepted → shipment_accepted",
            stage: Stage::Shipping,
            state: Paid,
            made: &[Operation::Reserve, Operation::Charge],
            answer: Some((Success, Applied, "accepted")),
            ..ROW
        },
        Row {
            name: "shipping: refused destination → blocked, nothing rolled back",
            stage: Stage::Shipping,
            profile: "[shipping]\nunsupported_countries = [\"ZZ\"]\n",
            state: Paid,
            country: "ZZ",
            made: &[Operation::Reserve, Operation::Charge],
            answer: Some((BusinessRejection, NotApplied, "unsupported_destination")),
            ..ROW
        },
        Row {
            name: "shipping: after a timeout, found accepted by key → proceeds",
            stage: Stage::Shipping,
            state: ShippingPending,
            made: &[Operation::Reserve, Operation::Charge, Operation::Ship],
            answer: Some((Success, Applied, "accepted")),
            ..ROW
        },
        Row {
            name: "any: past the stage's deadline → escalated as stuck",
            stage: Stage::Payment,
            state: Reserved,
            delivery: Delivery::Deadline,
            ..ROW
        },
        // docs/stage-logic.md, the cancel table.
        Row {
            name: "cancel in received → cancelled without calling",
            cancel: true,
            delivery: Delivery::Cancel,
            ..ROW
        },
        Row {
            name: "cancel in inventory_pending → asked, released, cancelled",
            state: InventoryPending,
            cancel: true,
            delivery: Delivery::Cancel,
            made: &[Operation::Reserve],
            answer: Some((Success, Applied, "reserved")),
            ..ROW
        },
        Row {
            name: "cancel in reserved → handed to payment",
            state: Reserved,
            cancel: true,
            delivery: Delivery::Cancel,
            ..ROW
        },
        Row {
            name: "cancel in reserved, the payment stage: no charge → released, cancelled",
            stage: Stage::Payment,
            state: Reserved,
            cancel: true,
            made: &[Operation::Reserve],
            ..ROW
        },
        Row {
            name: "cancel in payment_pending: a charge found → refunded, released, cancelled",
            stage: Stage::Payment,
            state: PaymentPending,
            cancel: true,
            made: &[Operation::Reserve, Operation::Charge],
            answer: Some((Success, Applied, "succeeded")),
            ..ROW
        },
        Row {
            name: "cancel in payment_pending: still unknown → re-checked, never guessed",
            stage: Stage::Payment,
            profile: "[payment]\nprocessing_ms = 60000\n",
            state: PaymentPending,
            token: "tok_processing",
            cancel: true,
            made: &[Operation::Reserve, Operation::Charge],
            answer: Some((Success, Unknown, "processing")),
            ..ROW
        },
        Row {
            name: "cancel in paid → handed to shipping",
            state: Paid,
            cancel: true,
            delivery: Delivery::Cancel,
            ..ROW
        },
        Row {
            name: "cancel in paid, the shipping stage: refunded, released, cancelled",
            stage: Stage::Shipping,
            state: Paid,
            cancel: true,
            made: &[Operation::Reserve, Operation::Charge],
            ..ROW
        },
        Row {
            name: "cancel in shipping_pending: a shipment found → blocked",
            stage: Stage::Shipping,
            state: ShippingPending,
            cancel: true,
            made: &[Operation::Reserve, Operation::Charge, Operation::Ship],
            answer: Some((Success, Applied, "accepted")),
            ..ROW
        },
        Row {
            name: "cancel in shipment_accepted → blocked for a person",
            state: ShipmentAccepted,
            cancel: true,
            delivery: Delivery::Cancel,
            ..ROW
        },
        Row {
            name: "cancel in cancelled → noted",
            state: Cancelled,
            cancel: true,
            delivery: Delivery::Cancel,
            ..ROW
        },
        Row {
            name: "cancel in rejected → noted",
            state: Rejected,
            cancel: true,
            delivery: Delivery::Cancel,
            ..ROW
        },
        Row {
            name: "cancel in delivered → refused to a person",
            state: Delivered,
            cancel: true,
            delivery: Delivery::Cancel,
            ..ROW
        },
        Row {
            name: "cancel in blocked → refused to a person",
            state: Blocked,
            cancel: true,
            delivery: Delivery::Cancel,
            ..ROW
        },
        Row {
            name: "cancel in escalated → refused to a person",
            state: Escalated,
            cancel: true,
            delivery: Delivery::Cancel,
            ..ROW
        },
    ]
}

/// What an effect does, without the ids only the downstream can make.
#[derive(Debug, PartialEq)]
struct Summary {
    moves_to: Option<OrderState>,
    event: Option<String>,
    rule: Option<String>,
    note: Option<(String, String)>,
    sends: Vec<String>,
}

fn summary(effect: &Effect) -> Summary {
    Summary {
        moves_to: effect.transition.as_ref().map(|t| t.to),
        event: effect.transition.as_ref().map(|t| t.event.clone()),
        rule: effect.transition.as_ref().map(|t| t.rule.clone()),
        note: effect
            .note
            .as_ref()
            .map(|n| (n.event.clone(), n.rule.clone())),
        sends: effect
            .emissions
            .iter()
            .map(|e| match e {
                Emission::Next { stage } => format!("next {stage}"),
                Emission::Delay { tier, .. } => format!("delay {tier}"),
                Emission::Exception { reason, .. } => format!("exception {reason}"),
                Emission::Event { routing_key, .. } => format!("event {routing_key}"),
            })
            .collect(),
    }
}

fn body(row: &Row, id: &str) -> serde_json::Value {
    serde_json::json!({
        "schema": "order.placed/v1",
        "order_id": id,
        "customer_id": "c-1",
        "items": [{"sku": row.sku, "quantity": 2, "unit_price": 1250}],
        "currency": "EUR",
        "payment_token": row.token,
        "shipping_address": {"name": "A", "line1": "1 Road", "city": "Town", "postal_code": "1000", "country": row.country},
        "placed_at": "2026-11-28T10:00:00Z"
    })
}

fn job(row: &Row, order_id: &OrderId) -> Job {
    let body = match row.delivery {
        Delivery::Step => serde_json::to_vec(&StepMessage::new(order_id, row.stage)),
        Delivery::Deadline => {
            serde_json::to_vec(&StepMessage::check(order_id, row.stage, Check::Deadline))
        }
        Delivery::Cancel => serde_json::to_vec(&serde_json::json!({
            "schema": "order.cancel/v1", "order_id": order_id, "reason": "customer"
        })),
    }
    .unwrap();
    Job {
        message_id: format!("m-{order_id}"),
        correlation_id: order_id.to_string(),
        meta: Default::default(),
        runs: 1,
        first_attempt_at_ms: jiff::Timestamp::now().as_millisecond(),
        elapsed: Duration::ZERO,
        body,
        reruns: 0,
    }
}

/// Makes what earlier stages (or an earlier run) made, at the simulator,
/// with the order's own keys, and records the ids on the order.
async fn make(downstreams: &Downstreams, order: &mut OrderRecord, made: &[Operation]) {
    let placed: OrderPlaced = serde_json::from_value(order.body.clone()).unwrap();
    let id = order.order_id.clone();
    for operation in made {
        let key = IdempotencyKey::new(&id, *operation);
        let made = match operation {
            Operation::Reserve => downstreams
                .inventory
                .reserve(&key, &id, &placed.items)
                .await
                .body
                .map(|r| r.reservation_id),
            Operation::Charge => downstreams
                .payment
                .charge(
                    &key,
                    &id,
                    placed.total(),
                    &placed.currency,
                    &placed.payment_token,
                )
                .await
                .body
                .map(|p| p.payment_id),
            Operation::Ship => downstreams
                .shipping
                .create(&key, &id, &placed.shipping_address, &placed.items)
                .await
                .body
                .map(|s| s.shipment_id),
            other => panic!("nothing to make for {other:?}"),
        };
        let made = made.unwrap_or_else(|| panic!("the simulator made no {operation:?}"));
        order.downstream_ids.insert(operation.stage(), made);
    }
}

async fn run_row(row: &Row, n: usize) {
    let ns = format!("t-dry-{}", uuid::Uuid::new_v4().simple());
    let store = Store::connect(REDIS_URL, &ns).await.unwrap_or_else(|e| {
        panic!("cannot reach Redis at {REDIS_URL}: {e}; start it with scripts/services.sh")
    });
    let source = if row.policy.is_empty() {
        POLICY
    } else {
        row.policy
    };
    let policy: Arc<Policy> = Arc::new(
        orderflow_core::policy::parse(source, "test")
            .unwrap_or_else(|e| panic!("{}: the row's policy: {e}", row.name)),
    );
    let sim = downstream_sim::start(Profile::from_toml(row.profile).expect("valid profile"))
        .await
        .expect("simulator starts");
    let urls = Urls::all_at(sim.base_url());
    let downstreams = Arc::new(Downstreams::new(&urls, &policy).unwrap());
    let env = Env {
        store,
        policy_id: policy.id(),
        policy: policy.clone(),
        spec: Arc::new(orderflow_broker::TopologySpec::from_policy(&ns, &policy).unwrap()),
        actor: "dry-run-test".into(),
    };
    let order_id = OrderId::parse(&format!("o-{n}")).unwrap();
    let now = jiff::Timestamp::now();
    let mut order = OrderRecord {
        order_id: order_id.clone(),
        state: row.state,
        version: 3,
        reason: None,
        body: body(row, order_id.as_str()),
        correlation_id: order_id.to_string(),
        policy_id: policy.id().to_string(),
        created_at: now,
        // A deadline check finds the order in its state for two hours
        // (past the default deadline of one).
        updated_at: match row.delivery {
            Delivery::Deadline => now - jiff::SignedDuration::from_hours(2),
            _ => now,
        },
        downstream_ids: BTreeMap::new(),
        last_outcomes: BTreeMap::new(),
        cancel_requested: row.cancel.then(|| "customer".to_owned()),
        reservation_committed: false,
    };
    make(&downstreams, &mut order, row.made).await;
    let job = job(row, &order_id);

    let applied = match row.stage {
        Stage::Inventory => {
            InventoryStage::new(downstreams.clone())
                .run(&order, &job, &env)
                .await
        }
        Stage::Payment => {
            PaymentStage::new(downstreams.clone())
                .run(&order, &job, &env)
                .await
        }
        Stage::Shipping => {
            ShippingStage::new(downstreams.clone())
                .run(&order, &job, &env)
                .await
        }
    }
    .unwrap_or_else(|e| panic!("{}: the stage failed: {e}", row.name));

    let answer = row.answer.map(|(class, certainty, code)| {
        let mut outcome = Outcome::new(class, certainty);
        outcome.code = Some(code.to_owned());
        outcome
    });
    let foreseen = match foresee(Shape::of(row.stage), &policy, &order, &job, answer.as_ref()) {
        Foresight::Applies { effect, .. } => *effect,
        Foresight::Absorbs => Effect::default(),
        other => panic!(
            "{}: the dry run cannot say what happens: {other:?}",
            row.name
        ),
    };
    assert_eq!(
        summary(&foreseen),
        summary(&applied),
        "{}: the dry run (left) and the stage (right) differ",
        row.name
    );
}

#[tokio::test]
async fn every_row_of_the_stage_and_cancel_tables_is_dry_run_as_applied() {
    for (n, row) in rows().iter().enumerate() {
        run_row(row, n).await;
    }
}
