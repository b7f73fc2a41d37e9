//! `orderctl status`, `order` and `stage` as an operator runs them,
//! against the real RabbitMQ and Redis (`ORDERFLOW_TEST_AMQP_URL`,
//! `ORDERFLOW_TEST_REDIS_URL`; defaults on 127.0.0.1). Each test has a
//! namespace of its own, deleted when it ends, passed or failed; orders are
//! set up directly with the store.

use orderflow_broker::{Connection, Settlement, TopologySpec, admin};
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Policy, Stage};
use orderflow_store::{Store, Transition};
use serde_json::{Value, json};
use std::process::{Command, Output};

use orderflow_testkit::services::{amqp_url, redis_url};

struct Namespace {
    name: String,
    spec: TopologySpec,
    runtime: tokio::runtime::Runtime,
    connection: Connection,
    store: Store,
}

impl Namespace {
    /// Declared on RabbitMQ; fails the test at once, naming the missing
    /// service, when RabbitMQ or Redis cannot be reached.
    fn new() -> Namespace {
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a test runtime");
        let spec = TopologySpec::from_policy(&name, &Policy::default_policy()).unwrap();
        let (connection, store) = runtime.block_on(async {
            let connection = orderflow_testkit::services::connect_broker().await;
            let store = orderflow_testkit::services::connect_store(&name).await;
            orderflow_broker::declare(&connection, &spec)
                .await
                .expect("declare the topology");
            (connection, store)
        });
        Namespace {
            name,
            spec,
            runtime,
            connection,
            store,
        }
    }

    /// `orderctl ARGS` in this namespace, with nothing inherited from the
    /// caller's `ORDERFLOW_*` settings.
    fn orderctl(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_orderctl"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ORDERFLOW_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .env("ORDERFLOW_NAMESPACE", &self.name)
            .env("ORDERFLOW_AMQP_URL", amqp_url())
            .env("ORDERFLOW_REDIS_URL", redis_url())
            .env("USER", "alice")
            .output()
            .expect("orderctl runs")
    }

    /// An order moved along `path` the way the stages would.
    fn order(&self, id: &str, path: &[(OrderState, Option<&str>)]) -> OrderId {
        let order_id = OrderId::parse(id).unwrap();
        let policy_id = Policy::default_policy().id();
        self.runtime.block_on(async {
            self.store
                .create_order(
                    &order_id,
                    &json!({"order_id": id}),
                    "corr-1",
                    &policy_id,
                    "test",
                )
                .await
                .unwrap();
            let (mut version, mut state) = (1, OrderState::Received);
            for (to, reason) in path {
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
                            correlation_id: "corr-1".into(),
                            policy_id: policy_id.clone(),
                            rule: None,
                            fields_to_set: Vec::new(),
                            idempotency: None,
                            fencing: None,
                            release_lease: false,
                        },
                    )
                    .await
                    .unwrap();
                state = *to;
            }
        });
        order_id
    }

    fn audit_len(&self, order_id: &OrderId) -> usize {
        self.runtime
            .block_on(self.store.order_audit(order_id))
            .unwrap()
            .len()
    }

    fn state(&self, order_id: &OrderId) -> OrderState {
        self.runtime
            .block_on(self.store.get_order(order_id))
            .unwrap()
            .unwrap()
            .state
    }

    /// Takes every message of `queue`: their message ids.
    fn drain(&self, queue: &str) -> Vec<Option<String>> {
        self.runtime.block_on(async {
            let mut ids = Vec::new();
            while let Some(fetched) = admin::get(&self.connection, queue).await.unwrap() {
                ids.push(fetched.message().meta().message_id.clone());
                fetched.settle(Settlement::Ack).await.unwrap();
            }
            ids
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.runtime.block_on(async {
            let _ = orderflow_broker::topology::delete(&self.connection, &self.spec).await;
            let _ = self.store.purge_namespace().await;
        });
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{:?}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&output.stdout)))
}

fn escalated_payment(ns: &Namespace, id: &str) -> OrderId {
    ns.order(
        id,
        &[
            (OrderState::Reserved, None),
            (OrderState::PaymentPending, None),
            (OrderState::Escalated, Some("payment_unresolved")),
        ],
    )
}

#[test]
fn order_show_and_list_print_json_for_scripts_and_tables_for_people() {
    let ns = Namespace::new();
    let id = escalated_payment(&ns, "o-show");
    let view = json(&ns.orderctl(&["order", "show", "o-show", "--json"]));
    assert_eq!(view["order_id"], "o-show");
    assert_eq!(view["state"], "escalated");
    assert_eq!(view["reason"], "payment_unresolved");
    assert_eq!(view["escalated_from"], "payment_pending");
    let timeline = view["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), ns.audit_len(&id));
    assert_eq!(timeline[3]["from"], "payment_pending");
    assert_eq!(timeline[3]["actor"], "worker@test/1");

    let table = ns.orderctl(&["order", "show", "o-show"]);
    assert!(table.status.success());
    let table = text(&table.stdout);
    assert!(table.contains("payment_pending → escalated"), "{table}");
    assert!(table.contains("orderctl order resolve o-show"), "{table}");

    let list = json(&ns.orderctl(&["order", "list", "--state", "escalated", "--json"]));
    assert_eq!(list["orders"][0]["order_id"], "o-show");
    let none = json(&ns.orderctl(&[
        "order",
        "list",
        "--state",
        "escalated",
        "--older-than",
        "1h",
        "--json",
    ]));
    assert_eq!(none["orders"].as_array().unwrap().len(), 0);
}

#[test]
fn an_unsafe_action_is_refused_with_exit_3_and_changes_nothing() {
    let ns = Namespace::new();
    let id = ns.order(
        "o-done",
        &[
            (OrderState::Reserved, None),
            (OrderState::Paid, None),
            (OrderState::ShipmentAccepted, None),
            (OrderState::Delivered, None),
        ],
    );
    let before = ns.audit_len(&id);
    let out = ns.orderctl(&[
        "order",
        "resolve",
        "o-done",
        "--stage",
        "payment",
        "--outcome",
        "failed",
        "--reason",
        "customer says so",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("refused") && stderr.contains("shipped"),
        "{stderr}"
    );
    let cancel = ns.orderctl(&["order", "cancel", "o-done", "--reason", "r"]);
    assert_eq!(cancel.status.code(), Some(3), "{}", text(&cancel.stdout));
    assert_eq!(ns.audit_len(&id), before);
    assert_eq!(ns.state(&id), OrderState::Delivered);
}

#[test]
fn the_same_action_id_twice_acts_once() {
    let ns = Namespace::new();
    let id = escalated_payment(&ns, "o-twice");
    let before = ns.audit_len(&id);
    let args = [
        "order",
        "retry",
        "o-twice",
        "--stage",
        "payment",
        "--reason",
        "provider fixed",
        "--action-id",
        "act-42",
        "--json",
    ];
    let first = json(&ns.orderctl(&args));
    assert_eq!(first["done"], "acted");
    assert_eq!(first["to"], "reserved");
    assert_eq!(first["actor"], "operator:alice", "$USER when no --actor");
    let second = json(&ns.orderctl(&args));
    assert_eq!(second["done"], "repeated");
    assert_eq!(ns.audit_len(&id), before + 1, "one move, audited once");
    assert_eq!(ns.state(&id), OrderState::Reserved);
    // Both runs sent the step message, with the same id: a worker runs it
    // once.
    let sent = ns.drain(&ns.spec.names().work_queue(Stage::Payment));
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1]);

    // Without --action-id one is generated and printed.
    let other = escalated_payment(&ns, "o-generated");
    let out = ns.orderctl(&[
        "order",
        "retry",
        "o-generated",
        "--stage",
        "payment",
        "--reason",
        "r",
        "--actor",
        "bob",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("action id act-") && stdout.contains("operator:bob"),
        "{stdout}"
    );
    assert_eq!(ns.state(&other), OrderState::Reserved);
}

#[test]
fn a_missing_or_blank_reason_is_exit_2() {
    let ns = Namespace::new();
    let id = escalated_payment(&ns, "o-reason");
    let missing = ns.orderctl(&["order", "retry", "o-reason", "--stage", "payment"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("--reason"),
        "{}",
        text(&missing.stderr)
    );
    let blank = ns.orderctl(&[
        "order", "retry", "o-reason", "--stage", "payment", "--reason", " ",
    ]);
    assert_eq!(blank.status.code(), Some(2), "{}", text(&blank.stderr));
    let pause = ns.orderctl(&["stage", "pause", "payment"]);
    assert_eq!(pause.status.code(), Some(2));
    assert_eq!(ns.state(&id), OrderState::Escalated);
}

#[test]
fn status_shows_a_paused_stage_until_it_is_resumed() {
    let ns = Namespace::new();
    let paused = ns.orderctl(&[
        "stage",
        "pause",
        "payment",
        "--reason",
        "provider outage",
        "--actor",
        "carol",
    ]);
    assert!(paused.status.success(), "{}", text(&paused.stderr));
    let status = json(&ns.orderctl(&["status", "--json"]));
    assert_eq!(status["namespace"], ns.name.as_str());
    let payment = &status["stages"][1];
    assert_eq!(payment["stage"], "payment");
    assert_eq!(payment["paused"]["reason"], "provider outage");
    assert_eq!(payment["paused"]["actor"], "operator:carol");
    assert_eq!(status["stages"][0]["paused"], Value::Null);
    assert_eq!(status["redis"]["kind"], "single");
    let table = text(&ns.orderctl(&["status"]).stdout);
    assert!(
        table.contains("PAUSED") && table.contains("provider outage"),
        "{table}"
    );
    assert!(table.contains("redis: one node"), "{table}");

    let resumed = ns.orderctl(&["stage", "resume", "payment", "--reason", "back", "--json"]);
    let resumed = json(&resumed);
    assert_eq!(resumed["ended"]["reason"], "provider outage");
    let status = json(&ns.orderctl(&["status", "--json"]));
    assert_eq!(status["stages"][1]["paused"], Value::Null);
}

#[test]
fn cancel_prints_the_plan_and_acts_only_with_yes() {
    let ns = Namespace::new();
    let id = ns.order("o-cancel", &[(OrderState::Reserved, None)]);
    let plan = ns.orderctl(&["order", "cancel", "o-cancel", "--reason", "customer asked"]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    let shown = text(&plan.stdout);
    assert!(
        shown.contains("payment stage") && shown.contains("--yes"),
        "{shown}"
    );
    assert_eq!(ns.audit_len(&id), 2, "a plan changes nothing");

    let done = json(&ns.orderctl(&[
        "order",
        "cancel",
        "o-cancel",
        "--reason",
        "customer asked",
        "--yes",
        "--json",
    ]));
    assert_eq!(done["done"], "requested");
    let ingress = ns.drain(&ns.spec.names().work_queue(Stage::Inventory));
    assert_eq!(
        ingress.len(),
        1,
        "the order.cancel reached the inventory stage"
    );
}

#[test]
fn a_namespace_without_orders_names_those_that_exist() {
    let ns = Namespace::new();
    ns.order("o-here", &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_orderctl"))
        .args(["order", "show", "o-here", "--namespace", "t-nothing-here"])
        .env("ORDERFLOW_REDIS_URL", redis_url())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("t-nothing-here") && stderr.contains(&ns.name),
        "{stderr}"
    );
}

/// The order archived as the reconciler does (confirmed to `{ns}.archive`,
/// then its keys removed).
fn archived(ns: &Namespace, order_id: &OrderId) {
    ns.runtime.block_on(async {
        let record = ns
            .store
            .archive_snapshot(order_id)
            .await
            .unwrap()
            .expect("a finished order");
        let publisher = orderflow_broker::Publisher::connect(&amqp_url(), "orderctl-test")
            .await
            .unwrap();
        let meta = orderflow_broker::Meta {
            order_id: Some(order_id.to_string()),
            order_version: Some(record.version),
            ..orderflow_broker::Meta::default()
        };
        publisher
            .to_queue(
                &ns.spec.archive().name,
                serde_json::to_vec(&record).unwrap(),
                meta,
            )
            .await
            .unwrap();
        publisher.close().await;
        ns.store.expire_archived(&record).await.unwrap();
    });
}

#[test]
fn an_order_that_left_redis_is_shown_from_the_archive_and_exported() {
    let ns = Namespace::new();
    let start = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
    let id = ns.order("o-old", &[(OrderState::Rejected, None)]);
    archived(&ns, &id);
    assert!(
        ns.runtime
            .block_on(ns.store.get_order(&id))
            .unwrap()
            .is_none(),
        "gone from Redis"
    );

    let shown = ns.orderctl(&["order", "show", "o-old"]);
    let out = text(&shown.stdout);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    assert!(
        out.contains(&format!("to stream {}", ns.spec.archive().name))
            && out.contains("shown from the archive"),
        "{out}"
    );
    assert!(out.contains("rejected"), "{out}");
    let view = json(&ns.orderctl(&["order", "show", "o-old", "--json"]));
    assert_eq!(view["state"], "rejected");
    assert_eq!(view["archived"]["stream"], ns.spec.archive().name.as_str());

    let exported = ns.orderctl(&["archive", "export", "--from", &start.to_string()]);
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let lines: Vec<Value> = text(&exported.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["order_id"], "o-old");
    assert_eq!(lines[0]["schema"], "order.archived/v1");
}

#[test]
fn events_tail_reads_the_events_stream_for_one_order() {
    let ns = Namespace::new();
    ns.runtime.block_on(async {
        let publisher = orderflow_broker::Publisher::connect(&amqp_url(), "orderctl-test")
            .await
            .unwrap();
        for (order, state) in [("o-1", "received"), ("o-2", "received"), ("o-1", "paid")] {
            let body =
                json!({"event_id": format!("{order}.{state}"), "order_id": order, "state": state});
            publisher
                .publish(orderflow_broker::Outgoing {
                    exchange: ns.spec.names().events_exchange(),
                    routing_key: format!("order.{state}"),
                    body: serde_json::to_vec(&body).unwrap(),
                    meta: orderflow_broker::Meta {
                        order_id: Some(order.into()),
                        ..orderflow_broker::Meta::default()
                    },
                })
                .await
                .unwrap();
        }
        publisher.close().await;
    });
    let out = ns.orderctl(&[
        "events", "tail", "--order", "o-1", "--from", "first", "--limit", "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["received", "paid"]);
    assert_eq!(events[1]["routing_key"], "order.paid");
    assert!(events[1]["offset"].as_u64().unwrap() > events[0]["offset"].as_u64().unwrap());
}
