//! Each test: a namespace of its own on the real RabbitMQ and Redis (its
//! topology declared, deleted at the end, passed or failed), the
//! downstream simulator in this process, orders set up with the store,
//! and the console served on a loopback port of its own. A test that
//! cannot reach RabbitMQ or Redis fails and says how to start them.

use downstream_sim::Profile;
use orderflow_broker::{Connection, Meta, Publisher, TopologySpec, chain};
use orderflow_console::{Config, Console, Hosts};
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Policy, Stage};
use orderflow_ops::{Settings, Target};
use orderflow_store::{AuditEntry, FieldUpdate, Store, Transition};
use serde_json::{Value, json};

pub use orderflow_testkit::services::{amqp_url, redis_url};

pub struct Fleet {
    pub ns: String,
    pub store: Store,
    pub connection: Connection,
    pub publisher: Publisher,
    pub spec: TopologySpec,
    pub policy: Policy,
    /// The console's address: `http://127.0.0.1:PORT`.
    pub url: String,
    pub http: reqwest::Client,
    pub sim: downstream_sim::Running,
    server: tokio::task::JoinHandle<()>,
}

/// How a test's console is set up.
#[derive(Default)]
pub struct Options {
    pub token: Option<String>,
    pub default_actor: Option<String>,
    /// `--allowed-host`.
    pub allowed_hosts: Vec<String>,
}

impl Fleet {
    pub async fn new() -> Fleet {
        Fleet::with(Options {
            default_actor: Some("alice".into()),
            ..Options::default()
        })
        .await
    }

    pub async fn with(options: Options) -> Fleet {
        let ns = format!("t-{}", uuid::Uuid::new_v4().simple());
        let policy = Policy::default_policy();
        let connection = orderflow_testkit::services::connect_broker().await;
        let store = orderflow_testkit::services::connect_store(&ns).await;
        let spec = TopologySpec::from_policy(&ns, &policy).expect("a t-<uuid> namespace is valid");
        orderflow_broker::declare(&connection, &spec)
            .await
            .unwrap_or_else(|e| panic!("declare the topology: {}", chain(&e)));
        let sim = downstream_sim::start(Profile::default())
            .await
            .expect("the simulator starts");
        let target = Target::connect(Settings {
            namespace: ns.clone(),
            redis_url: redis_url(),
            amqp_url: amqp_url(),
            policy: policy.clone(),
            apis: Some(orderflow_stages_urls(sim.base_url())),
        })
        .await
        .expect("the target connects");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let listen = listener.local_addr().unwrap();
        let url = format!("http://{listen}");
        let console = Console::new(
            target,
            Config {
                token: options.token,
                default_actor: options.default_actor.unwrap_or_default(),
                export_dir: std::env::temp_dir().join(format!("{ns}-exports")),
                refresh_secs: 5,
                hosts: Hosts::new(listen.ip(), &options.allowed_hosts).expect("valid host names"),
            },
        );
        let router = console.router();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the console serves");
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Fleet {
            publisher: Publisher::lazy(&amqp_url(), &format!("{ns}.test")),
            ns,
            store,
            connection,
            spec,
            policy,
            url,
            http,
            sim,
            server,
        }
    }

    /// `GET path`: the status and the body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// `POST path` with a form, as a page of the console sends it.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .header("origin", &self.url)
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Creates the order and moves it along `path` (each `(state,
    /// reason)`), as the stages would, with `fields` set on the last move.
    pub async fn order(
        &self,
        id: &str,
        path: &[(OrderState, Option<&str>)],
        fields: Vec<FieldUpdate>,
    ) -> OrderId {
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
        let (mut version, mut state) = (1, OrderState::Received);
        for (i, (to, reason)) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            version = self
                .store
                .transition(
                    &order_id,
                    &Transition {
                        expected_version: version,
                        from: state,
                        to: *to,
                        reason: reason.map(str::to_owned),
                        event: format!("test.{to}"),
                        actor: "worker@test/1".into(),
                        correlation_id: format!("corr-{id}"),
                        policy_id: self.policy.id(),
                        rule: Some("test.rule".into()),
                        fields_to_set: if last { fields.clone() } else { Vec::new() },
                        idempotency: None,
                        fencing: None,
                        release_lease: false,
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("move {id} to {to}: {e}"));
            state = *to;
        }
        order_id
    }

    /// Puts a message into the stage's exception queue.
    pub async fn park(&self, stage: Stage, body: &[u8], meta: Meta) {
        self.publisher
            .to_queue(
                &self.spec.names().exception_queue(stage),
                body.to_vec(),
                meta,
            )
            .await
            .expect("parked");
    }

    pub async fn audit(&self, order_id: &OrderId) -> Vec<AuditEntry> {
        self.store
            .order_audit(order_id)
            .await
            .expect("the audit reads")
    }
}

fn orderflow_stages_urls(base: &str) -> orderflow_stages::Urls {
    orderflow_stages::Urls {
        inventory: base.to_owned(),
        payment: base.to_owned(),
        shipping: base.to_owned(),
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.server.abort();
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

// The downstream simulator, called the way the fleet's stages call it, so
// an order set up here has real reservations and charges for the actions
// to check, refund and release.

/// The fleet's idempotency key (`{order_id}.{stage}.{operation}`, as
/// `orderflow_downstream::IdempotencyKey` makes it), spelled out because
/// these tests talk HTTP to the simulator.
fn fleet_key(order_id: &OrderId, stage: Stage, operation: &str) -> String {
    format!("{order_id}.{stage}.{operation}")
}

impl Fleet {
    /// A real reservation in the simulator, with the fleet's key.
    pub async fn reserve(&self, order_id: &OrderId) -> String {
        let body = json!({
            "order_id": order_id.as_str(),
            "items": placed(order_id.as_str())["items"],
        });
        let key = fleet_key(order_id, Stage::Inventory, "reserve");
        let answer = self.sim_post("/v1/reservations", &key, body).await;
        answer["reservation_id"]
            .as_str()
            .expect("a reservation id")
            .to_owned()
    }

    /// A real charge in the simulator, with the fleet's key; `tok_ok`
    /// succeeds.
    pub async fn charge(&self, order_id: &OrderId, token: &str) -> String {
        let body = json!({
            "order_id": order_id.as_str(),
            "amount": 2500,
            "currency": "EUR",
            "payment_token": token,
        });
        let key = fleet_key(order_id, Stage::Payment, "charge");
        let answer = self.sim_post("/v1/payments", &key, body).await;
        answer["payment_id"]
            .as_str()
            .expect("a payment id")
            .to_owned()
    }

    /// The simulator's ground truth.
    pub async fn ledger(&self) -> downstream_sim::Ledger {
        self.http
            .get(format!("{}/_ledger", self.sim.base_url()))
            .send()
            .await
            .expect("the ledger answers")
            .json()
            .await
            .expect("the ledger is JSON")
    }

    async fn sim_post(&self, path: &str, key: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.sim.base_url()))
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} to the simulator: {e}"));
        assert!(
            response.status().is_success(),
            "POST {path}: {}",
            response.status()
        );
        response.json().await.expect("a JSON answer")
    }
}
