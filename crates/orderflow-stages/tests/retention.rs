//! The retention sweep on the real Redis and RabbitMQ, without workers:
//! finished orders past `retention.finished_for` are archived (confirmed)
//! to `{ns}.archive` and only then leave Redis; orders a person still needs
//! stay; two reconcilers sweeping at once archive each order once.

use orderflow_broker::stream::{self, Offset};
use orderflow_broker::{Connection, Publisher, TopologySpec};
use orderflow_core::OrderState;
use orderflow_core::message::OrderId;
use orderflow_runtime::Env;
use orderflow_stages::Reconciler;
use orderflow_store::{ArchivedOrder, Store, Transition};
use serde_json::json;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

const AMQP_URL: &str = orderflow_settings::DEFAULT_AMQP_URL;
const REDIS_URL: &str = orderflow_settings::DEFAULT_REDIS_URL;

/// Everything that bounds a finished order's retention made short, so a
/// one-second retention passes the policy check.
const SHORT_RETENTION: &str = r#"
[exceptions]
replay_window = "1s"
[fulfilment]
poll_interval = "200ms"
stall_after = "1s"
[retention]
finished_for = "1s"
streams_for = "1s"
sweep_interval = "100ms"
[stages.inventory]
delay_tiers = ["200ms"]
ambiguity_window = "1s"
deadline = "1s"
[stages.payment]
delay_tiers = ["200ms"]
ambiguity_window = "1s"
deadline = "1s"
[stages.shipping]
delay_tiers = ["200ms"]
ambiguity_window = "1s"
deadline = "1s"
[downstreams.inventory]
key_retention = "1s"
[downstreams.payment]
key_retention = "1s"
[downstreams.shipping]
key_retention = "1s"
"#;

struct Setup {
    store: Store,
    conn: Connection,
    spec: Arc<TopologySpec>,
    publisher: Publisher,
    env: Env,
}

impl Setup {
    async fn new() -> Setup {
        let ns = format!("t-{}", uuid::Uuid::new_v4().simple());
        let policy =
            Arc::new(orderflow_core::policy::parse(SHORT_RETENTION, "test").expect("valid policy"));
        let store = Store::connect(REDIS_URL, &ns).await.unwrap_or_else(|e| {
            panic!("cannot reach Redis at {REDIS_URL}: {e}; start it with scripts/services.sh")
        });
        let conn = orderflow_broker::connect(AMQP_URL)
            .await
            .unwrap_or_else(|e| panic!("cannot reach RabbitMQ at {AMQP_URL}: {e}"));
        let spec = Arc::new(TopologySpec::from_policy(&ns, &policy).unwrap());
        orderflow_broker::declare(&conn, &spec).await.unwrap();
        let publisher = Publisher::connect(AMQP_URL, &format!("{ns}.test"))
            .await
            .unwrap();
        let env = Env {
            store: store.clone(),
            policy_id: policy.id(),
            policy,
            spec: spec.clone(),
            actor: "reconciler-test".into(),
        };
        Setup {
            store,
            conn,
            spec,
            publisher,
            env,
        }
    }

    fn reconciler(&self) -> Reconciler {
        Reconciler::new(self.env.clone(), self.publisher.clone())
    }

    /// Creates the order and moves it along `path` the way the stages do.
    async fn order(&self, name: &str, path: &[OrderState]) -> OrderId {
        let id = OrderId::parse(name).unwrap();
        let body = json!({"schema": "order.placed/v1", "order_id": name});
        self.store
            .create_order(&id, &body, "corr", &self.env.policy_id, "test")
            .await
            .expect("create order");
        for (version, step) in (1u64..).zip(path.windows(2)) {
            let transition = Transition {
                expected_version: version,
                from: step[0],
                to: step[1],
                reason: step[1].requires_reason().then(|| "needs a person".into()),
                event: format!("test.{}", step[1]),
                actor: "test".into(),
                correlation_id: "corr".into(),
                policy_id: self.env.policy_id.clone(),
                rule: None,
                fields_to_set: Vec::new(),
                idempotency: Some((
                    orderflow_core::Stage::Inventory,
                    format!("msg:{name}-{version}"),
                    json!([]),
                )),
                fencing: None,
                release_lease: false,
            };
            self.store.transition(&id, &transition).await.unwrap();
        }
        id
    }

    /// Every record on the archive stream so far.
    async fn archive(&self) -> Vec<ArchivedOrder> {
        let mut records = Vec::new();
        stream::read(
            &self.conn,
            &self.spec.archive().name,
            Offset::First,
            Duration::from_millis(300),
            |message| {
                records.push(serde_json::from_slice(&message.body).expect("an archived order"));
                ControlFlow::Continue(())
            },
        )
        .await
        .expect("read the archive");
        records
    }

    async fn finish(self) {
        self.publisher.close().await;
        let _ = orderflow_broker::topology::delete(&self.conn, &self.spec).await;
        let _ = self.store.purge_namespace().await;
    }
}

use OrderState::*;
const DELIVERED: &[OrderState] = &[Received, Reserved, Paid, ShipmentAccepted, Delivered];
const REJECTED: &[OrderState] = &[Received, Rejected];
const ESCALATED: &[OrderState] = &[Received, Reserved, Escalated];
const IN_FLIGHT: &[OrderState] = &[Received, Reserved, Paid];

#[tokio::test]
async fn finished_orders_are_archived_once_then_leave_redis_and_others_stay() {
    let setup = Setup::new().await;
    let mut finished = Vec::new();
    for n in 0..20 {
        let path = if n % 4 == 0 { REJECTED } else { DELIVERED };
        finished.push(setup.order(&format!("done-{n}"), path).await);
    }
    let person = setup.order("person", ESCALATED).await;
    let moving = setup.order("moving", IN_FLIGHT).await;

    // Two reconcilers sweep at once, again and again, until every finished
    // order has left Redis.
    let (a, b) = (setup.reconciler(), setup.reconciler());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (swept_a, swept_b) = tokio::join!(a.sweep_retention(), b.sweep_retention());
        swept_a.expect("sweep a");
        swept_b.expect("sweep b");
        let mut left = 0;
        for id in &finished {
            left += usize::from(setup.store.get_order(id).await.unwrap().is_some());
        }
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} finished orders still in Redis"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let archive = setup.archive().await;
    let mut archived: Vec<&str> = archive.iter().map(|r| r.order_id.as_str()).collect();
    archived.sort_unstable();
    let mut expected: Vec<&str> = finished.iter().map(OrderId::as_str).collect();
    expected.sort_unstable();
    assert_eq!(
        archived, expected,
        "every finished order archived exactly once"
    );
    for record in &archive {
        let order = record.order().unwrap();
        assert!(matches!(order.state, Delivered | Rejected));
        assert_eq!(
            record.audit.len() as u64,
            order.version,
            "the whole audit trail"
        );
    }
    // Past the retention too, but a person needs one and the other is
    // still moving: both stay, with every key.
    for id in [&person, &moving] {
        assert!(setup.store.get_order(id).await.unwrap().is_some(), "{id}");
        assert!(
            !setup.store.order_audit(id).await.unwrap().is_empty(),
            "{id}"
        );
    }
    setup.finish().await;
}
