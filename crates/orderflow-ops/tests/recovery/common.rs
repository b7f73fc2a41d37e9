//! A namespace of its own per test on the real RabbitMQ and Redis, its
//! topology declared; orders set up directly with the store; the
//! downstream simulator in this process when a test needs the APIs.
//! Queues and keys are deleted when the test ends, passed or failed. A
//! test that cannot reach RabbitMQ or Redis fails and says how to start
//! them.

use downstream_sim::{Ledger, Profile};
use orderflow_broker::{Connection, Incoming, Settlement, TopologySpec, admin, chain};
use orderflow_core::message::OrderId;
use orderflow_core::{Certainty, FailureClass, OrderState, Policy, Stage};
use orderflow_downstream::{IdempotencyKey, InventoryApi, Operation, PaymentApi, ShippingApi};
use orderflow_ops::{ActionInput, Settings, Target};
use orderflow_stages::Urls;
use orderflow_store::{FieldUpdate, LastOutcome, Store, Transition};
use serde_json::{Value, json};
use std::time::Duration;

pub use orderflow_testkit::services::{amqp_url, redis_url};

pub struct Fleet {
    pub ns: String,
    pub target: Target,
    pub store: Store,
    pub connection: Connection,
    pub spec: TopologySpec,
    pub policy: Policy,
    sim: Option<downstream_sim::Running>,
}

impl Fleet {
    /// Broker and store only.
    pub async fn new() -> Fleet {
        Fleet::start(false).await
    }

    /// With the downstream simulator behind all three APIs.
    pub async fn with_apis() -> Fleet {
        Fleet::start(true).await
    }

    async fn start(apis: bool) -> Fleet {
        let ns = format!("t-{}", uuid::Uuid::new_v4().simple());
        let policy = Policy::default_policy();
        let connection = orderflow_testkit::services::connect_broker().await;
        let store = orderflow_testkit::services::connect_store(&ns).await;
        let spec = TopologySpec::from_policy(&ns, &policy).expect("a t-<uuid> namespace is valid");
        orderflow_broker::declare(&connection, &spec)
            .await
            .unwrap_or_else(|e| panic!("declare the topology: {}", chain(&e)));
        let sim = if apis {
            Some(
                downstream_sim::start(Profile::default())
                    .await
                    .expect("the simulator starts"),
            )
        } else {
            None
        };
        let target = Target::connect(Settings {
            namespace: ns.clone(),
            redis_url: redis_url(),
            amqp_url: amqp_url(),
            policy: policy.clone(),
            apis: sim.as_ref().map(|sim| Urls {
                inventory: sim.base_url().to_owned(),
                payment: sim.base_url().to_owned(),
                shipping: sim.base_url().to_owned(),
            }),
        })
        .await
        .expect("the target connects");
        Fleet {
            ns,
            target,
            store,
            connection,
            spec,
            policy,
            sim,
        }
    }

    pub fn sim_url(&self) -> &str {
        self.sim
            .as_ref()
            .expect("a fleet with APIs (Fleet::with_apis)")
            .base_url()
    }

    pub async fn ledger(&self) -> Ledger {
        reqwest::get(format!("{}/_ledger", self.sim_url()))
            .await
            .expect("the ledger answers")
            .json()
            .await
            .expect("the ledger is JSON")
    }

    /// Creates the order and moves it along `path`, as the stages would.
    pub async fn order(&self, id: &str, path: &[Move]) -> OrderId {
        let order_id = OrderId::parse(id).unwrap();
        self.store
            .create_order(
                &order_id,
                &placed(id),
                &format!("corr-{id}"),
                &self.policy.id(),
                "inventory-worker@test/1",
            )
            .await
            .expect("create the order");
        let mut version = 1;
        let mut state = OrderState::Received;
        for step in path {
            version = self
                .store
                .transition(
                    &order_id,
                    &Transition {
                        expected_version: version,
                        from: state,
                        to: step.to,
                        reason: step.reason.clone(),
                        event: format!("test.{}", step.to),
                        actor: "worker@test/1".into(),
                        correlation_id: format!("corr-{id}"),
                        policy_id: self.policy.id(),
                        rule: Some("test.rule".into()),
                        fields_to_set: step.fields.clone(),
                        idempotency: None,
                        fencing: None,
                        release_lease: false,
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("move {id} to {}: {e}", step.to));
            state = step.to;
        }
        order_id
    }

    /// A real reservation in the simulator, with the fleet's key.
    pub async fn reserve(&self, order_id: &OrderId) -> String {
        let api = InventoryApi::new(self.sim_url(), &self.policy).unwrap();
        let key = IdempotencyKey::new(order_id, Operation::Reserve);
        let placed: orderflow_core::message::OrderPlaced =
            serde_json::from_value(placed(order_id.as_str())).unwrap();
        let answer = api.reserve(&key, order_id, &placed.items).await;
        answer.body.expect("reserved").reservation_id
    }

    /// A real charge in the simulator, with the fleet's key.
    pub async fn charge(&self, order_id: &OrderId, token: &str) -> String {
        let api = PaymentApi::new(self.sim_url(), &self.policy).unwrap();
        let key = IdempotencyKey::new(order_id, Operation::Charge);
        let answer = api.charge(&key, order_id, 2500, "EUR", token).await;
        answer.body.expect("charged").payment_id
    }

    /// A real accepted shipment in the simulator, with the fleet's key.
    pub async fn ship(&self, order_id: &OrderId) -> String {
        let api = ShippingApi::new(self.sim_url(), &self.policy).unwrap();
        let key = IdempotencyKey::new(order_id, Operation::Ship);
        let placed: orderflow_core::message::OrderPlaced =
            serde_json::from_value(placed(order_id.as_str())).unwrap();
        let answer = api
            .create(&key, order_id, &placed.shipping_address, &placed.items)
            .await;
        answer.body.expect("shipped").shipment_id
    }

    /// Takes (acks) every message in `queue`.
    pub async fn drain(&self, queue: &str) -> Vec<Incoming> {
        // Publishes are confirmed before the calls return; the short wait
        // only lets channels closed by peeks hand their messages back.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut taken = Vec::new();
        while let Some(fetched) = admin::get(&self.connection, queue)
            .await
            .unwrap_or_else(|e| panic!("get from {queue}: {}", chain(&e)))
        {
            taken.push(fetched.message().clone());
            fetched.settle(Settlement::Ack).await.expect("ack");
        }
        taken
    }

    /// Every customer event on the namespace's events stream so far (read
    /// from its start; reading takes nothing away).
    pub async fn events(&self) -> Vec<Value> {
        let name = self.spec.events().name.clone();
        let mut events = Vec::new();
        orderflow_broker::stream::read(
            &self.connection,
            &name,
            orderflow_broker::stream::Offset::First,
            Duration::from_millis(300),
            |message| {
                events.push(serde_json::from_slice(&message.body).expect("a JSON event"));
                std::ops::ControlFlow::Continue(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("read {name}: {}", chain(&e)));
        events
    }

    pub fn work_queue(&self, stage: Stage) -> String {
        self.spec.names().work_queue(stage)
    }

    pub fn input(&self, order_id: &OrderId, action_id: Option<&str>) -> ActionInput {
        ActionInput {
            order_id: order_id.to_string(),
            reason: "checked with the provider".into(),
            operator: "alice".into(),
            action_id: action_id.map(str::to_owned),
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let (spec, ns) = (self.spec.clone(), self.ns.clone());
        // Drop cannot await, and the test's runtime may be unwinding.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a cleanup runtime");
            runtime.block_on(async {
                if let Ok(connection) = orderflow_broker::connect(&amqp_url()).await {
                    let _ = orderflow_broker::topology::delete(&connection, &spec).await;
                }
                if let Ok(store) = Store::connect(&redis_url(), &ns).await {
                    let _ = store.purge_namespace().await;
                }
            });
        })
        .join();
    }
}

/// One move of a test order.
pub struct Move {
    pub to: OrderState,
    pub reason: Option<String>,
    pub fields: Vec<FieldUpdate>,
}

pub fn to(state: OrderState) -> Move {
    Move {
        to: state,
        reason: None,
        fields: Vec::new(),
    }
}

impl Move {
    pub fn because(mut self, reason: &str) -> Move {
        self.reason = Some(reason.to_owned());
        self
    }

    pub fn made(mut self, stage: Stage, id: &str) -> Move {
        self.fields.push(FieldUpdate::DownstreamId {
            stage,
            id: id.to_owned(),
        });
        self
    }

    pub fn outcome(mut self, stage: Stage, class: FailureClass, certainty: Certainty) -> Move {
        self.fields.push(FieldUpdate::LastOutcome {
            stage,
            outcome: LastOutcome { class, certainty },
        });
        self
    }
}

pub fn placed(id: &str) -> Value {
    json!({
        "schema": "order.placed/v1",
        "order_id": id,
        "customer_id": "cust-1",
        "items": [{"sku": "SKU-1", "quantity": 1, "unit_price": 2500}],
        "currency": "EUR",
        "payment_token": "tok_ok",
        "shipping_address": {
            "name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin",
            "postal_code": "10115", "country": "DE"
        },
        "placed_at": "2026-11-28T10:15:00Z"
    })
}

/// The body as JSON.
pub fn json_of(message: &Incoming) -> Value {
    serde_json::from_slice(message.body()).expect("a JSON body")
}
