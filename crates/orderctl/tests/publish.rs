//! `orderctl publish` against the real broker, each test in a namespace of
//! its own.

use orderflow_broker::{Connection, TopologySpec, admin};
use orderflow_core::{Policy, Stage};
use std::process::{Command, Output};

fn orderctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orderctl"))
        .args(args)
        .env_remove("ORDERFLOW_NAMESPACE")
        .output()
        .expect("orderctl runs")
}

/// A declared namespace, deleted on `stop`.
struct Namespace {
    name: String,
    spec: TopologySpec,
    conn: Connection,
}

impl Namespace {
    async fn declared() -> Namespace {
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        let spec = TopologySpec::from_policy(&name, &Policy::default_policy()).unwrap();
        let conn = orderflow_testkit::services::connect_broker().await;
        orderflow_broker::declare(&conn, &spec).await.unwrap();
        Namespace { name, spec, conn }
    }

    async fn inventory_depth(&self) -> u32 {
        let queue = self.spec.names().work_queue(Stage::Inventory);
        admin::queue_depth(&self.conn, &queue).await.unwrap()
    }

    async fn stop(self) {
        orderflow_broker::topology::delete(&self.conn, &self.spec)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn generated_orders_reach_the_inventory_queue_confirmed() {
    let ns = Namespace::declared().await;
    let out = orderctl(&[
        "publish",
        "--count",
        "25",
        "--mix",
        "happy",
        "--namespace",
        &ns.name,
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["confirmed"], 25);
    assert_eq!(ns.inventory_depth().await, 25);
    ns.stop().await;
}

#[tokio::test]
async fn a_file_with_a_bad_line_publishes_nothing_and_names_every_problem() {
    let ns = Namespace::declared().await;
    let path = std::env::temp_dir().join(format!("{}.jsonl", ns.name));
    let good = r#"{"schema":"order.cancel/v1","order_id":"ord-1","reason":"changed mind"}"#;
    let bad = r#"{"schema":"order.cancel/v1","order_id":"ord 2","reason":""}"#;
    std::fs::write(&path, format!("{good}\n\n{bad}\n")).unwrap();
    let file = path.to_str().unwrap();

    let out = orderctl(&["publish", "--file", file, "--namespace", &ns.name]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("line 3: /order_id") && stderr.contains("line 3: /reason"),
        "{stderr}"
    );
    assert_eq!(ns.inventory_depth().await, 0, "nothing published");

    std::fs::write(&path, format!("{good}\n")).unwrap();
    let out = orderctl(&["publish", "--file", file, "--namespace", &ns.name]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("1 of 1 messages confirmed"));
    assert_eq!(ns.inventory_depth().await, 1);
    let _ = std::fs::remove_file(&path);
    ns.stop().await;
}

#[test]
fn publishing_into_an_undeclared_namespace_fails_with_a_hint() {
    let name = format!("t-{}", uuid::Uuid::new_v4().simple());
    let out = orderctl(&["publish", "--count", "3", "--namespace", &name]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("namespace `{name}`")), "{stderr}");
}
