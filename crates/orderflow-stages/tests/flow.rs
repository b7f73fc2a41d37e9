//! The three stages and the reconciler, in-process, on the real RabbitMQ
//! and Redis and against the simulator: the stage logic's own loop, quicker
//! than the process-level end-to-end tests in the workspace's `tests/`.

use downstream_sim::Endpoint;
use downstream_sim::Profile;
use downstream_sim::ledger::{Ledger, PaymentState, ReservationState};
use orderflow_broker::{
    Connection, Consumer, ConsumerConfig, Meta, Outgoing, Publisher, TopologySpec,
};
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Stage};
use orderflow_runtime::{Env, StageRunner};
use orderflow_stages::{
    Downstreams, InventoryStage, PaymentStage, Reconciler, ShippingStage, Urls,
};
use orderflow_store::{OrderRecord, Store};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const AMQP_URL: &str = orderflow_settings::DEFAULT_AMQP_URL;
const REDIS_URL: &str = orderflow_settings::DEFAULT_REDIS_URL;

const FAST: &str = r#"
[fulfilment]
poll_interval = "100ms"
stall_after = "3s"
[stages.inventory]
delay_tiers = ["200ms", "500ms", "1s", "2s"]
in_flight_window = "300ms"
status_poll = { interval = "100ms", limit = 2 }
[stages.payment]
delay_tiers = ["200ms", "500ms", "1s", "2s"]
in_flight_window = "300ms"
status_poll = { interval = "100ms", limit = 2 }
[stages.shipping]
delay_tiers = ["200ms", "500ms", "1s", "2s"]
in_flight_window = "300ms"
status_poll = { interval = "100ms", limit = 2 }
"#;

struct Fleet {
    ns: String,
    store: Store,
    conn: Connection,
    spec: Arc<TopologySpec>,
    publisher: Publisher,
    sim: downstream_sim::Running,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    async fn start(profile: &str) -> Fleet {
        let ns = format!("t-{}", uuid::Uuid::new_v4().simple());
        let policy = Arc::new(orderflow_core::policy::parse(FAST, "test").expect("valid policy"));
        let sim = downstream_sim::start(Profile::from_toml(profile).expect("valid profile"))
            .await
            .expect("simulator starts");
        let store = Store::connect(REDIS_URL, &ns).await.unwrap_or_else(|e| {
            panic!("cannot reach Redis at {REDIS_URL}: {e}; start it with scripts/services.sh")
        });
        let conn = orderflow_broker::connect(AMQP_URL)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach RabbitMQ at {AMQP_URL}: {e}; start it with scripts/services.sh"
                )
            });
        let spec = Arc::new(TopologySpec::from_policy(&ns, &policy).unwrap());
        orderflow_broker::declare(&conn, &spec).await.unwrap();
        let publisher = Publisher::connect(AMQP_URL, &format!("{ns}.test"))
            .await
            .unwrap();
        let env = Env {
            store: store.clone(),
            policy_id: policy.id(),
            policy: policy.clone(),
            spec: spec.clone(),
            actor: "stages-test".into(),
        };
        let urls = Urls::all_at(sim.base_url());
        let downstreams = Arc::new(Downstreams::new(&urls, &policy).unwrap());
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let consumer = |stage: Stage| ConsumerConfig {
            amqp_url: AMQP_URL.into(),
            queue: spec.names().work_queue(stage),
            prefetch: 20,
            concurrency: 8,
            shutdown_grace: Duration::from_secs(2),
            consumer_tag_prefix: format!("{ns}.{stage}"),
        };
        macro_rules! spawn_stage {
            ($logic:expr, $stage:expr) => {{
                let runner = StageRunner::new($logic, env.clone());
                let (config, spec, shutdown) =
                    (consumer($stage), (*spec).clone(), shutdown.clone());
                tasks.push(tokio::spawn(async move {
                    Consumer::run(config, spec, runner, shutdown)
                        .await
                        .expect("consumer runs");
                }));
            }};
        }
        spawn_stage!(InventoryStage::new(downstreams.clone()), Stage::Inventory);
        spawn_stage!(PaymentStage::new(downstreams.clone()), Stage::Payment);
        spawn_stage!(ShippingStage::new(downstreams.clone()), Stage::Shipping);
        let reconciler = Reconciler::new(env.clone(), publisher.clone());
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            reconciler.run(stop).await.expect("reconciler runs");
        }));
        Fleet {
            ns,
            store,
            conn,
            spec,
            publisher,
            sim,
            shutdown,
            tasks,
        }
    }

    async fn publish(&self, routing_key: &str, body: serde_json::Value) {
        let meta = Meta {
            message_id: Some(uuid::Uuid::new_v4().to_string()),
            ..Meta::default()
        };
        let message = Outgoing {
            exchange: self.spec.names().orders_exchange(),
            routing_key: routing_key.into(),
            body: body.to_string().into_bytes(),
            meta,
        };
        self.publisher.publish(message).await.unwrap();
    }

    async fn place(&self, id: &str, token: &str) -> OrderId {
        self.publish("order.placed", order(id, token)).await;
        OrderId::parse(id).unwrap()
    }

    async fn wait_for(&self, id: &OrderId, state: OrderState, within: Duration) -> OrderRecord {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let record = self.store.get_order(id).await.unwrap();
            if let Some(record) = &record
                && record.state == state
            {
                return record.clone();
            }
            if tokio::time::Instant::now() > deadline {
                let audit = self.store.order_audit(id).await.unwrap_or_default();
                let trail: Vec<String> = audit
                    .iter()
                    .map(|e| {
                        format!(
                            "{:?}→{} {} {:?} {:?}",
                            e.from, e.to, e.event, e.reason, e.rule
                        )
                    })
                    .collect();
                panic!(
                    "{id} did not reach {state} within {within:?}: {:?}\n{}",
                    record.map(|r| (r.state, r.reason)),
                    trail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ledger(&self) -> Ledger {
        reqwest::get(format!("{}/_ledger", self.sim.base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The exception queue's depth once it reaches `expected` (the message
    /// is published just after the state is written), or after 5 s.
    async fn exception_depth(&self, stage: Stage, expected: u32) -> u32 {
        let queue = self.spec.names().exception_queue(stage);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let depth = orderflow_broker::admin::queue_depth(&self.conn, &queue)
                .await
                .unwrap();
            if depth >= expected || tokio::time::Instant::now() > deadline {
                return depth;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.publisher.close().await;
        let _ = orderflow_broker::topology::delete(&self.conn, &self.spec).await;
        let _ = self.store.purge_namespace().await;
        let _ = self.ns;
    }
}

fn order(id: &str, token: &str) -> serde_json::Value {
    json!({
        "schema": "order.placed/v1",
        "order_id": id,
        "customer_id": "c-1",
        "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": 1250}],
        "currency": "EUR",
        "payment_token": token,
        "shipping_address": {"name": "A", "line1": "1 Road", "city": "Town", "postal_code": "1000", "country": "NL"},
        "placed_at": "2026-11-28T10:00:00Z"
    })
}

const QUICK_FULFILMENT: &str = "[shipping]\nfulfilment_step_ms = 100\n";

#[tokio::test]
async fn an_order_is_reserved_paid_shipped_and_tracked_to_delivery() {
    let fleet = Fleet::start(QUICK_FULFILMENT).await;
    let id = fleet.place("happy-1", "tok_ok").await;
    let record = fleet
        .wait_for(&id, OrderState::Delivered, Duration::from_secs(20))
        .await;
    assert_eq!(
        record.downstream_ids.len(),
        3,
        "reservation, payment, shipment ids kept"
    );
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.reservations.len(), 1);
    assert_eq!(ledger.payments.len(), 1);
    assert_eq!(ledger.shipments.len(), 1);
    assert_eq!(ledger.reservations[0].state, ReservationState::Committed);
    assert!(record.reservation_committed);
    assert_eq!(
        ledger.calls_to(Endpoint::InventoryCommit),
        1,
        "committed when the carrier accepted, not again at delivery"
    );
    fleet.stop().await;
}

/// The commit when the carrier accepts is refused: the order is accepted
/// all the same, and the reconciler commits before it marks it delivered.
#[tokio::test]
async fn a_commit_refused_at_acceptance_is_made_before_delivery() {
    let fleet = Fleet::start(&format!(
        "{QUICK_FULFILMENT}[faults.\"inventory.commit\"]\nunavailable_503 = 1.0\n"
    ))
    .await;
    let id = fleet.place("commit-1", "tok_ok").await;
    let accepted = fleet
        .wait_for(&id, OrderState::ShipmentAccepted, Duration::from_secs(20))
        .await;
    assert!(!accepted.reservation_committed);
    // The shipping stage's own commit attempts are over once the order is
    // accepted; a further one is the fulfilment check, the parcel delivered,
    // committing before it ends the order — and being refused.
    let refused_at_acceptance = fleet.ledger().await.calls_to(Endpoint::InventoryCommit);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fleet.ledger().await.calls_to(Endpoint::InventoryCommit) <= refused_at_acceptance {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fulfilment check never tried the commit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        fleet.store.get_order(&id).await.unwrap().unwrap().state,
        OrderState::ShipmentAccepted,
        "not delivered while the stock is not sold"
    );

    let lifted = reqwest::Client::new()
        .put(format!("{}/_faults", fleet.sim.base_url()))
        .json(&serde_json::json!({"shipping": {"fulfilment_step_ms": 100}}))
        .send()
        .await
        .expect("the simulator answers");
    assert!(lifted.status().is_success());
    fleet
        .wait_for(&id, OrderState::Delivered, Duration::from_secs(20))
        .await;
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.reservations[0].state, ReservationState::Committed);
    fleet.stop().await;
}

#[tokio::test]
async fn a_declined_charge_rejects_the_order_and_releases_the_stock() {
    let fleet = Fleet::start("").await;
    let id = fleet.place("declined-1", "tok_declined").await;
    let record = fleet
        .wait_for(&id, OrderState::Rejected, Duration::from_secs(20))
        .await;
    assert_eq!(record.reason.as_deref(), Some("card_declined"));
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.reservations[0].state, ReservationState::Released);
    assert!(ledger.shipments.is_empty());
    fleet.stop().await;
}

#[tokio::test]
async fn a_processing_charge_waits_pending_then_ships() {
    let fleet =
        Fleet::start("[payment]\nprocessing_ms = 1000\n[shipping]\nfulfilment_step_ms = 100\n")
            .await;
    let id = fleet.place("slow-pay-1", "tok_processing").await;
    fleet
        .wait_for(&id, OrderState::PaymentPending, Duration::from_secs(10))
        .await;
    assert!(
        fleet.ledger().await.shipments.is_empty(),
        "no shipment while pending"
    );
    fleet
        .wait_for(&id, OrderState::Delivered, Duration::from_secs(20))
        .await;
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.payments.len(), 1);
    fleet.stop().await;
}

#[tokio::test]
async fn a_refused_destination_blocks_the_order_without_rolling_back() {
    let fleet = Fleet::start("[shipping]\nunsupported_countries = [\"NL\"]\n").await;
    let id = fleet.place("blocked-1", "tok_ok").await;
    let record = fleet
        .wait_for(&id, OrderState::Blocked, Duration::from_secs(20))
        .await;
    assert_eq!(record.reason.as_deref(), Some("unsupported_destination"));
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.payments[0].state, PaymentState::Succeeded);
    assert_eq!(ledger.reservations[0].state, ReservationState::Reserved);
    assert_eq!(fleet.exception_depth(Stage::Shipping, 1).await, 1);
    fleet.stop().await;
}

#[tokio::test]
async fn a_cancel_while_paid_refunds_and_releases() {
    // Shipping refuses every booking for now: the order waits in `paid`.
    let profile = "[faults.\"shipping.create\"]\nunavailable_503 = 1.0\n";
    let fleet = Fleet::start(profile).await;
    let id = fleet.place("cancel-paid-1", "tok_ok").await;
    fleet
        .wait_for(&id, OrderState::Paid, Duration::from_secs(10))
        .await;
    fleet
        .publish(
            "order.cancel",
            json!({"schema": "order.cancel/v1", "order_id": "cancel-paid-1", "reason": "changed my mind"}),
        )
        .await;
    let record = fleet
        .wait_for(&id, OrderState::Cancelled, Duration::from_secs(20))
        .await;
    assert!(record.reason.unwrap().starts_with("cancelled"));
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.payments[0].state, PaymentState::Refunded);
    assert_eq!(ledger.reservations[0].state, ReservationState::Released);
    assert!(ledger.shipments.is_empty());
    fleet.stop().await;
}

#[tokio::test]
async fn a_replacement_order_cancels_the_one_it_supersedes_before_payment() {
    // Every charge fails with 503 for now, so the first order waits in
    // `reserved` — before payment — when its replacement arrives.
    let profile = "[faults.\"payment.charge\"]\nunavailable_503 = 1.0\n";
    let fleet = Fleet::start(profile).await;
    let first = fleet.place("super-1", "tok_ok").await;
    fleet
        .wait_for(&first, OrderState::Reserved, Duration::from_secs(10))
        .await;
    let mut replacement = order("super-2", "tok_ok");
    replacement["supersedes"] = json!("super-1");
    fleet.publish("order.placed", replacement).await;
    let record = fleet
        .wait_for(&first, OrderState::Cancelled, Duration::from_secs(20))
        .await;
    assert_eq!(record.reason.as_deref(), Some("superseded by super-2"));
    let ledger = fleet.ledger().await;
    let released = ledger
        .reservations
        .iter()
        .find(|r| r.order_id == "super-1")
        .unwrap();
    assert_eq!(released.state, ReservationState::Released);
    assert!(ledger.payments.iter().all(|p| p.order_id != "super-1"));
    fleet.stop().await;
}

#[tokio::test]
async fn a_charge_that_times_out_after_applying_is_found_not_repeated() {
    let profile = "[faults.\"payment.charge\"]\ntimeout_after_apply = 1.0\nhang_ms = 5000\n\
                   [shipping]\nfulfilment_step_ms = 100\n";
    let fleet = Fleet::start(profile).await;
    let id = fleet.place("ambiguous-1", "tok_ok").await;
    fleet
        .wait_for(&id, OrderState::Delivered, Duration::from_secs(30))
        .await;
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.payments.len(), 1, "one charge, found by its key");
    assert_eq!(ledger.shipments.len(), 1);
    fleet.stop().await;
}

#[tokio::test]
async fn a_payment_refunded_after_shipment_is_escalated_not_rolled_back() {
    let fleet = Fleet::start("[shipping]\nfulfilment_step_ms = 60000\n").await;
    let id = fleet.place("late-refund-1", "tok_ok").await;
    let record = fleet
        .wait_for(&id, OrderState::ShipmentAccepted, Duration::from_secs(20))
        .await;
    let payment_id = &record.downstream_ids[&Stage::Payment];
    let refunded = reqwest::Client::new()
        .post(format!(
            "{}/v1/payments/{payment_id}/refund",
            fleet.sim.base_url()
        ))
        .header("Idempotency-Key", "someone-else")
        .send()
        .await
        .unwrap();
    assert!(refunded.status().is_success());
    let record = fleet
        .wait_for(&id, OrderState::Escalated, Duration::from_secs(20))
        .await;
    assert_eq!(
        record.reason.as_deref(),
        Some("payment_failed_after_shipment")
    );
    let ledger = fleet.ledger().await;
    assert_eq!(ledger.reservations[0].state, ReservationState::Committed);
    fleet.stop().await;
}
