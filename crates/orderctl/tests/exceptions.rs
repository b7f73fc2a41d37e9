//! `orderctl exceptions …` as an operator runs it: the real binary against
//! the real RabbitMQ and Redis, each test in a namespace of its own.

use orderflow_broker::{Connection, Meta, Publisher, TopologySpec, admin};
use orderflow_core::message::OrderId;
use orderflow_core::{Certainty, FailureClass, Policy, Stage};
use orderflow_store::Store;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use orderflow_testkit::services::{self, amqp_url, redis_url};

fn orderctl(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orderctl"));
    command
        .args(args)
        .env_remove("ORDERFLOW_NAMESPACE")
        .env_remove("ORDERFLOW_POLICY")
        .env("ORDERFLOW_AMQP_URL", amqp_url())
        .env("ORDERFLOW_REDIS_URL", redis_url())
        .env("ORDERFLOW_ACTOR", "cli-tester");
    command
}

fn run(args: &[&str]) -> Output {
    orderctl(args).output().expect("orderctl runs")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json printed no JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A declared namespace with its store; deleted by `stop`.
struct Namespace {
    name: String,
    spec: TopologySpec,
    conn: Connection,
    store: Store,
    publisher: Publisher,
}

impl Namespace {
    async fn declared() -> Namespace {
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        let spec = TopologySpec::from_policy(&name, &Policy::default_policy()).unwrap();
        let conn = services::connect_broker().await;
        orderflow_broker::declare(&conn, &spec).await.unwrap();
        let store = services::connect_store(&name).await;
        let publisher = Publisher::connect(&amqp_url(), "orderctl-test")
            .await
            .unwrap();
        Namespace {
            name,
            spec,
            conn,
            store,
            publisher,
        }
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        all.extend(["--namespace", &self.name]);
        all
    }

    async fn depth(&self, queue: &str) -> u32 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        admin::queue_depth(&self.conn, queue).await.unwrap()
    }

    fn exceptions(&self, stage: Stage) -> String {
        self.spec.names().exception_queue(stage)
    }

    fn work(&self, stage: Stage) -> String {
        self.spec.names().work_queue(stage)
    }

    async fn park(&self, stage: Stage, body: Vec<u8>, meta: Meta) {
        self.publisher
            .to_queue(&self.exceptions(stage), body, meta)
            .await
            .unwrap();
    }

    async fn park_step(&self, stage: Stage, order: &str, id: &str) {
        let body = json!({"schema": "orderflow.step/v1", "order_id": order, "stage": stage});
        let meta = Meta {
            message_id: Some(id.to_owned()),
            timestamp: Some(1_764_325_000),
            stage: Some(stage),
            attempt: Some(3),
            // Recent: a replay refuses steps first tried before the replay window.
            first_attempt_at: Some(jiff::Timestamp::now().as_millisecond() - 3_600_000),
            class: Some(FailureClass::Timeout),
            certainty: Some(Certainty::Unknown),
            reason: Some(format!("{stage}_unresolved")),
            order_id: Some(order.to_owned()),
            ..Meta::default()
        };
        self.park(stage, body.to_string().into_bytes(), meta).await;
    }

    async fn stop(self) {
        self.publisher.close().await;
    }
}

impl Drop for Namespace {
    /// Deletes the namespace's queues, exchanges and keys, also when the
    /// test failed (on a thread of its own: drop cannot await).
    fn drop(&mut self) {
        let (spec, name) = (self.spec.clone(), self.name.clone());
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                if let Ok(conn) = orderflow_broker::connect(&amqp_url()).await {
                    let _ = orderflow_broker::topology::delete(&conn, &spec).await;
                }
                if let Ok(store) = Store::connect(&redis_url(), &name).await {
                    let _ = store.purge_namespace().await;
                }
            });
        })
        .join();
        if cleaned.is_err() && !std::thread::panicking() {
            panic!("cleaning up namespace {} failed", self.name);
        }
    }
}

fn temp_file(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("orderctl-{}-{name}", uuid::Uuid::new_v4().simple()))
}

fn malformed_meta(id: &str) -> Meta {
    Meta {
        message_id: Some(id.to_owned()),
        timestamp: Some(1_764_325_000),
        stage: Some(Stage::Inventory),
        class: Some(FailureClass::Malformed),
        reason: Some("malformed".into()),
        ..Meta::default()
    }
    .with_extra("validation-errors", "/shipping_address/country: …")
}

fn broken_order(id: &str) -> Vec<u8> {
    json!({
        "schema": "order.placed/v1", "order_id": id, "customer_id": "c-1",
        "items": [{"sku": "SKU-1", "quantity": 0, "unit_price": 100}],
        "currency": "EUR", "payment_token": "tok_ok",
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "de"},
        "placed_at": "2026-11-28T10:15:00Z"
    })
    .to_string()
    .into_bytes()
}

/// Parks `count` payment steps (`o-N.payment.v4.0`), many publishes at
/// once; their message ids.
async fn park_payment_steps(ns: &Namespace, count: usize) -> HashSet<String> {
    let queue = ns.exceptions(Stage::Payment);
    let mut parked = tokio::task::JoinSet::new();
    for n in 0..count {
        let publisher = ns.publisher.clone();
        let queue = queue.clone();
        parked.spawn(async move {
            let order = format!("o-{n}");
            let body =
                json!({"schema": "orderflow.step/v1", "order_id": order, "stage": "payment"});
            let meta = Meta {
                message_id: Some(format!("{order}.payment.v4.0")),
                reason: Some("payment_unresolved".into()),
                order_id: Some(order),
                ..Meta::default()
            };
            publisher
                .to_queue(&queue, body.to_string().into_bytes(), meta)
                .await
        });
        if parked.len() >= 64 {
            parked.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(done) = parked.join_next().await {
        done.unwrap().unwrap();
    }
    (0..count).map(|n| format!("o-{n}.payment.v4.0")).collect()
}

/// The message ids of an export file's lines, each line checked whole and
/// each id once.
fn exported_ids(path: &std::path::Path) -> HashSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut ids = HashSet::new();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a line cut or overwritten ({e}): {line}"));
        assert!(
            ids.insert(record["id"].as_str().unwrap().to_owned()),
            "written twice: {}",
            record["id"]
        );
    }
    ids
}

#[tokio::test]
async fn an_export_killed_halfway_and_rerun_loses_nothing_and_writes_nothing_twice() {
    const MESSAGES: usize = 2000;
    let ns = Namespace::declared().await;
    let queue = ns.exceptions(Stage::Payment);
    let expected = park_payment_steps(&ns, MESSAGES).await;
    let out = temp_file("killed.jsonl");
    let out_arg = out.to_str().unwrap();

    let mut child = orderctl(&ns.args(&[
        "exceptions",
        "export",
        "--stage",
        "payment",
        "--out",
        out_arg,
    ]))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let started = Instant::now();
    loop {
        let lines = std::fs::read(&out)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0);
        if lines >= 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the export wrote {lines} lines in a minute"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the export ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed, not finished: {status}");
    let lines_at_kill = std::fs::read_to_string(&out).unwrap().lines().count();
    assert!(
        lines_at_kill < MESSAGES,
        "killed halfway: {lines_at_kill} lines"
    );

    let rerun = run(&ns.args(&[
        "exceptions",
        "export",
        "--stage",
        "payment",
        "--out",
        out_arg,
        "--json",
    ]));
    assert_exit(&rerun, 0);
    let report = json_of(&rerun);
    assert_eq!(report["lines"], MESSAGES, "{report}");

    assert_eq!(exported_ids(&out), expected, "nothing lost");
    assert_eq!(ns.depth(&queue).await, 0);
    let _ = std::fs::remove_file(&out);
    ns.stop().await;
}

/// Two operators (or one, twice) export one queue to one `--out` at the
/// same moment: every message leaves the queue only with a whole line in
/// the file. The export that finds the file taken says so and takes
/// nothing.
#[tokio::test]
async fn two_exports_to_one_file_at_once_lose_nothing() {
    const MESSAGES: usize = 600;
    let ns = Namespace::declared().await;
    let queue = ns.exceptions(Stage::Payment);
    let expected = park_payment_steps(&ns, MESSAGES).await;
    let out = temp_file("twice.jsonl");
    let export = || {
        orderctl(&ns.args(&[
            "exceptions",
            "export",
            "--stage",
            "payment",
            "--out",
            out.to_str().unwrap(),
        ]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (first, second) = (export(), export());
    let mut exported = 0;
    for child in [first, second] {
        let done = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&done.stderr);
        exported += usize::from(done.status.success());
        assert!(
            done.status.success()
                || (done.status.code() == Some(1) && stderr.contains("an export is writing")),
            "either exports or says the file is taken: {}\n{stderr}",
            done.status
        );
    }
    assert!(exported >= 1, "one of them exported");

    assert_eq!(ns.depth(&queue).await, 0, "every message left the queue");
    let ids = exported_ids(&out);
    assert_eq!(
        ids.len(),
        MESSAGES,
        "{} of {MESSAGES} messages left the queue without a line in {}",
        MESSAGES - ids.len(),
        out.display()
    );
    assert_eq!(ids, expected);
    let _ = std::fs::remove_file(&out);
    ns.stop().await;
}

#[tokio::test]
async fn list_and_peek_print_tables_or_json() {
    let ns = Namespace::declared().await;
    ns.park_step(Stage::Payment, "o-1", "o-1.payment.v4.0")
        .await;
    ns.park_step(Stage::Payment, "o-2", "o-2.payment.v4.0")
        .await;
    ns.park(Stage::Inventory, broken_order("o-3"), malformed_meta("m-3"))
        .await;

    let out = run(&ns.args(&["exceptions", "list", "--json"]));
    assert_exit(&out, 0);
    let listing = json_of(&out);
    let groups = listing["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{listing}");
    let payment = groups.iter().find(|g| g["stage"] == "payment").unwrap();
    assert_eq!(payment["count"], 2);
    assert_eq!(payment["reason"], "payment_unresolved");
    assert_eq!(payment["class"], "timeout");
    assert_eq!(payment["certainty"], "unknown");
    assert!(
        payment["action"]
            .as_str()
            .unwrap()
            .contains("order resolve")
    );

    let table = run(&ns.args(&["exceptions", "list"]));
    assert_exit(&table, 0);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("RECOMMENDED ACTION") && text.contains("payment_unresolved"),
        "{text}"
    );

    let out = run(&ns.args(&[
        "exceptions",
        "peek",
        "--stage",
        "payment",
        "-n",
        "1",
        "--json",
    ]));
    assert_exit(&out, 0);
    let peeked = json_of(&out);
    assert_eq!(peeked.as_array().unwrap().len(), 1);
    assert_eq!(peeked[0]["message"]["id"], "o-1.payment.v4.0");
    assert_eq!(
        peeked[0]["record"]["properties"]["headers"]["orderflow-attempt"]["i64"],
        3
    );
    let text = run(&ns.args(&["exceptions", "peek", "--stage", "inventory"]));
    assert!(String::from_utf8_lossy(&text.stdout).contains("orderflow-validation-errors"));

    assert_eq!(
        ns.depth(&ns.exceptions(Stage::Payment)).await,
        2,
        "nothing consumed"
    );
    ns.stop().await;
}

#[test]
fn a_wrong_namespace_is_bad_input_and_says_which_exist() {
    let name = format!("t-{}", uuid::Uuid::new_v4().simple());
    let out = run(&["exceptions", "list", "--namespace", &name]);
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("namespace `{name}`")), "{stderr}");
    assert!(
        stderr.contains("namespaces with orders or workers in this Redis")
            || stderr.contains("no namespace has orders or workers"),
        "{stderr}"
    );
}

#[tokio::test]
async fn replay_dry_runs_sends_once_per_replay_id_and_prints_json() {
    let ns = Namespace::declared().await;
    let order = OrderId::parse("o-1").unwrap();
    // A readable order: the dry run is the stage's own route, and an
    // unreadable one would only be escalated.
    let body = json!({
        "schema": "order.placed/v1", "order_id": "o-1", "customer_id": "c-1",
        "items": [{"sku": "SKU-1", "quantity": 1, "unit_price": 100}],
        "currency": "EUR", "payment_token": "tok_ok",
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"},
        "placed_at": "2026-11-28T10:15:00Z"
    });
    ns.store
        .create_order(&order, &body, "o-1", &Policy::default_policy().id(), "test")
        .await
        .unwrap();
    ns.park_step(Stage::Inventory, "o-1", "o-1.inventory.v2.0")
        .await;

    let dry = run(&ns.args(&[
        "exceptions",
        "replay",
        "--stage",
        "inventory",
        "--all",
        "--dry-run",
        "--json",
    ]));
    assert_exit(&dry, 0);
    let report = json_of(&dry);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["messages"][0]["outcome"], "planned");
    assert_eq!(
        report["messages"][0]["prediction"]["order_state"],
        "received"
    );
    assert!(
        report["messages"][0]["prediction"]["policy"]["rule"].is_string(),
        "{report}"
    );
    assert_eq!(
        ns.depth(&ns.work(Stage::Inventory)).await,
        0,
        "a dry run sends nothing"
    );

    let args = ns.args(&[
        "exceptions",
        "replay",
        "--stage",
        "inventory",
        "--id",
        "o-1.inventory.v2.0",
        "--replay-id",
        "r-cli",
        "--json",
    ]);
    let first = run(&args);
    assert_exit(&first, 0);
    assert_eq!(json_of(&first)["sent"], 1);
    assert!(String::from_utf8_lossy(&first.stderr).contains("replay id r-cli"));
    let again = run(&args);
    assert_exit(&again, 0);
    let again = json_of(&again);
    assert_eq!(
        (again["sent"].as_u64(), again["already_sent"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(ns.depth(&ns.work(Stage::Inventory)).await, 1, "sent once");

    let audit = ns.store.order_audit(&order).await.unwrap();
    let note = audit.iter().find(|e| e.event == "operator.replay").unwrap();
    assert_eq!(note.actor, "operator:cli-tester");

    let unknown = run(&ns.args(&[
        "exceptions",
        "replay",
        "--stage",
        "inventory",
        "--id",
        "nope",
    ]));
    assert_exit(&unknown, 2);
    let usage = run(&ns.args(&["exceptions", "replay", "--stage", "inventory"]));
    assert_exit(&usage, 2);
    ns.stop().await;
}

#[tokio::test]
async fn edit_fixes_a_malformed_message_and_discard_removes_one_audited() {
    let ns = Namespace::declared().await;
    ns.park(Stage::Inventory, broken_order("o-7"), malformed_meta("m-7"))
        .await;
    ns.park(Stage::Inventory, broken_order("o-8"), malformed_meta("m-8"))
        .await;

    // Half a fix: refused with what is still wrong, the original stays.
    let half = run(&ns.args(&[
        "exceptions",
        "edit",
        "--stage",
        "inventory",
        "--id",
        "m-7",
        "--set",
        "shipping_address.country=DE",
    ]));
    assert_exit(&half, 2);
    let stderr = String::from_utf8_lossy(&half.stderr);
    assert!(
        stderr.contains("/items/0/quantity") && stderr.contains("still in the queue"),
        "{stderr}"
    );
    assert_eq!(ns.depth(&ns.exceptions(Stage::Inventory)).await, 2);

    // In the editor (a script standing in for a person).
    let mut edit = orderctl(&ns.args(&[
        "exceptions",
        "edit",
        "--stage",
        "inventory",
        "--id",
        "m-7",
        "--json",
    ]));
    edit.env(
        "EDITOR",
        r#"sed -i -e 's/"de"/"DE"/' -e 's/"quantity": 0/"quantity": 2/'"#,
    )
    .env_remove("VISUAL");
    let out = edit.output().unwrap();
    assert_exit(&out, 0);
    let report = json_of(&out);
    assert!(
        report["new_id"].as_str().unwrap().starts_with("m-7.edit-"),
        "{report}"
    );
    assert_ne!(report["before_sha256"], report["after_sha256"]);
    let sent = {
        let fetched = admin::get(&ns.conn, &ns.work(Stage::Inventory))
            .await
            .unwrap()
            .unwrap();
        let body: Value = serde_json::from_slice(fetched.message().body()).unwrap();
        fetched
            .settle(orderflow_broker::Settlement::Ack)
            .await
            .unwrap();
        body
    };
    assert_eq!(sent["items"][0]["quantity"], 2);
    assert_eq!(sent["shipping_address"]["country"], "DE");

    let no_reason = run(&ns.args(&[
        "exceptions",
        "discard",
        "--stage",
        "inventory",
        "--id",
        "m-8",
    ]));
    assert_exit(&no_reason, 2);
    let discard = run(&ns.args(&[
        "exceptions",
        "discard",
        "--stage",
        "inventory",
        "--id",
        "m-8",
        "--reason",
        "test order from a broken producer",
        "--json",
    ]));
    assert_exit(&discard, 0);
    let report = json_of(&discard);
    assert_eq!(report["discarded"][0]["id"], "m-8");
    assert_eq!(report["discarded"][0]["audit"]["to"], "fleet");
    assert_eq!(ns.depth(&ns.exceptions(Stage::Inventory)).await, 0);
    let notes = ns.store.fleet_notes(None, 10).await.unwrap();
    let note = notes
        .iter()
        .find(|n| n.event == "operator.discard")
        .unwrap();
    assert!(note.reason.as_deref().unwrap().contains("broken producer"));
    assert_eq!(note.actor, "operator:cli-tester");
    ns.stop().await;
}

#[test]
fn reasons_json_names_every_reason_with_an_action() {
    let out = run(&["exceptions", "reasons", "--json"]);
    assert_exit(&out, 0);
    let reasons = json_of(&out);
    let all = reasons.as_array().unwrap();
    assert!(all.iter().any(|r| r["reason"] == "malformed"));
    assert!(
        all.iter()
            .all(|r| !r["action"].as_str().unwrap().is_empty())
    );
}
