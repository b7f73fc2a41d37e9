//! The reconciler on the real Redis and RabbitMQ, without workers: which
//! orders one round reaches. (docs/reliability.md, item 4: it used to read only the
//! oldest 1,000 orders of a state, so with more accepted shipments than
//! that in transit the newer ones were never tracked.)

use futures_util::{StreamExt, stream};
use orderflow_broker::{Publisher, TopologySpec};
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Policy};
use orderflow_runtime::Env;
use orderflow_stages::Reconciler;
use orderflow_store::{ScheduleKind, Store, Transition};
use serde_json::json;
use std::sync::Arc;

const AMQP_URL: &str = orderflow_settings::DEFAULT_AMQP_URL;
const REDIS_URL: &str = orderflow_settings::DEFAULT_REDIS_URL;

/// Creates the order and moves it to `shipment_accepted` the way the stages
/// do (each move audited and indexed).
async fn accepted_shipment(store: &Store, policy: &Policy, id: &OrderId) {
    let body = json!({"schema": "order.placed/v1", "order_id": id.as_str()});
    store
        .create_order(id, &body, "corr", &policy.id(), "test")
        .await
        .expect("create order");
    let path = [
        OrderState::Received,
        OrderState::Reserved,
        OrderState::Paid,
        OrderState::ShipmentAccepted,
    ];
    for (version, step) in (1u64..).zip(path.windows(2)) {
        let transition = Transition {
            expected_version: version,
            from: step[0],
            to: step[1],
            reason: None,
            event: format!("test.{}", step[1]),
            actor: "test".into(),
            correlation_id: "corr".into(),
            policy_id: policy.id(),
            rule: None,
            fields_to_set: Vec::new(),
            idempotency: None,
            fencing: None,
            release_lease: false,
        };
        store
            .transition(id, &transition)
            .await
            .unwrap_or_else(|e| panic!("moving {id} to {}: {e}", step[1]));
    }
}

#[tokio::test]
async fn a_round_reaches_every_accepted_shipment_beyond_the_first_thousand() {
    const SHIPMENTS: usize = 1_050;
    let ns = format!("t-{}", uuid::Uuid::new_v4().simple());
    let policy = Arc::new(Policy::default_policy());
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

    let ids: Vec<OrderId> = (0..SHIPMENTS)
        .map(|i| OrderId::parse(&format!("ship-{i:05}")).unwrap())
        .collect();
    stream::iter(&ids)
        .for_each_concurrent(32, |id| accepted_shipment(&store, &policy, id))
        .await;
    assert_eq!(
        store.count_by_state().await.unwrap()[&OrderState::ShipmentAccepted],
        SHIPMENTS as u64
    );

    let env = Env {
        store: store.clone(),
        policy_id: policy.id(),
        policy: policy.clone(),
        spec: spec.clone(),
        actor: "reconciler-test".into(),
    };
    let reconciler = Reconciler::new(env, publisher.clone());
    let asked = reconciler.round().await.expect("a round runs");

    // Every accepted shipment is on the tracking schedule (the first
    // thousand already asked about, the rest due next round).
    let scheduled = store
        .due(ScheduleKind::ShipmentTracking, u64::MAX, 2 * SHIPMENTS)
        .await
        .unwrap();
    let missing: Vec<&OrderId> = ids.iter().filter(|id| !scheduled.contains(id)).collect();

    publisher.close().await;
    let _ = orderflow_broker::topology::delete(&conn, &spec).await;
    let _ = store.purge_namespace().await;

    assert!(asked > 0, "the round asked about the shipments it claimed");
    assert!(
        missing.is_empty(),
        "{} of {SHIPMENTS} accepted shipments are not tracked, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}
