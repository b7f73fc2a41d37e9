use crate::common::{Fleet, to};
use orderflow_broker::{Meta, Publisher};
use orderflow_core::Policy;
use orderflow_core::decide::BreakerState;
use orderflow_core::{Certainty, FailureClass, OrderState, Stage};
use orderflow_ops::{ListFilter, RedisStatus, Settings, StatusOptions, Target};
use orderflow_store::Heartbeat;
use std::collections::BTreeMap;
use std::time::Duration;

async fn publish_exception(fleet: &Fleet, reason: &str, n: usize) {
    let publisher = Publisher::connect(&crate::common::amqp_url(), "ops-test")
        .await
        .unwrap();
    let queue = fleet.spec.names().exception_queue(Stage::Payment);
    for i in 0..n {
        let meta = Meta {
            message_id: Some(format!("{reason}-{i}")),
            reason: Some(reason.to_owned()),
            ..Meta::default()
        };
        publisher
            .to_queue(&queue, b"{}".to_vec(), meta)
            .await
            .unwrap();
    }
    publisher.close().await;
}

fn heartbeat(actor: &str, role: &str, policy_id: &str, payment: BreakerState) -> Heartbeat {
    Heartbeat {
        actor: actor.to_owned(),
        role: role.to_owned(),
        policy_id: policy_id.to_owned(),
        started_at: jiff::Timestamp::now(),
        breakers: BTreeMap::from([
            (Stage::Inventory, BreakerState::Closed),
            (Stage::Payment, payment),
        ]),
        paused: false,
    }
}

#[tokio::test]
async fn status_shows_queues_orders_breakers_workers_pauses_and_drift() {
    let fleet = Fleet::new().await;
    fleet.order("o-recv", &[]).await;
    fleet
        .order("o-esc", &[to(OrderState::Escalated).because("stuck")])
        .await;
    publish_exception(&fleet, "payment_unresolved", 2).await;
    publish_exception(&fleet, "compensation_refused", 1).await;
    let publisher = Publisher::connect(&crate::common::amqp_url(), "ops-test")
        .await
        .unwrap();
    publisher
        .to_queue(
            &fleet.work_queue(Stage::Payment),
            b"{}".to_vec(),
            Meta::default(),
        )
        .await
        .unwrap();
    publisher.close().await;
    let ours = fleet.policy.id().to_string();
    let ttl = Duration::from_secs(30);
    for beat in [
        heartbeat("payment-worker@a/1", "payment", &ours, BreakerState::Open),
        heartbeat(
            "payment-worker@b/2",
            "payment",
            "pol-other",
            BreakerState::Closed,
        ),
    ] {
        fleet.store.write_heartbeat(&beat, ttl).await.unwrap();
    }
    orderflow_ops::pause_stage(&fleet.target, Stage::Shipping, "carrier outage", "bob")
        .await
        .unwrap();

    let status = orderflow_ops::status(&fleet.target, StatusOptions::default())
        .await
        .unwrap();
    let payment = &status.stages[1];
    assert_eq!(payment.stage, Stage::Payment);
    assert_eq!(payment.work.as_ref().unwrap().messages, 1);
    assert_eq!(payment.work.as_ref().unwrap().consumers, 0);
    assert_eq!(payment.workers, 2);
    assert_eq!(
        payment.delays.len(),
        fleet.policy.stage(Stage::Payment).delay_tiers.len()
    );
    assert_eq!(payment.delays[0].delay, "2s");
    let exceptions = payment.exceptions.as_ref().unwrap();
    assert_eq!(exceptions.messages, 3);
    assert_eq!(exceptions.sampled, 3);
    assert_eq!(exceptions.by_reason["payment_unresolved"], 2);
    assert_eq!(exceptions.by_reason["compensation_refused"], 1);
    let shipping = &status.stages[2];
    let pause = shipping.paused.as_ref().expect("shipping is paused");
    assert_eq!(
        (pause.actor.as_str(), pause.reason.as_str()),
        ("operator:bob", "carrier outage")
    );
    assert!(status.stages[0].paused.is_none());

    assert_eq!(status.orders[&OrderState::Received], 1);
    assert_eq!(status.orders[&OrderState::Escalated], 1);
    assert_eq!(status.orders[&OrderState::Paid], 0);
    let budget = &status.downstreams[1];
    assert_eq!(budget.downstream, Stage::Payment);
    assert_eq!(budget.breakers["open"], 1);
    assert_eq!(budget.breakers["closed"], 1);
    assert!(budget.retry_budget_left > 0);

    assert!(
        matches!(status.redis, RedisStatus::Single { .. }),
        "{:?}",
        status.redis
    );
    assert_eq!(status.workers.len(), 2);
    assert!(status.policy_drift);
    assert_eq!(status.policies.len(), 2);
    let drift = &status.warnings[0];
    assert!(drift.starts_with("CONFIGURATION DRIFT"), "{drift}");
    assert!(
        drift.contains("pol-other") && drift.contains("payment-worker@b/2"),
        "{drift}"
    );
    assert!(
        status
            .warnings
            .iter()
            .any(|w| w.contains("shipping is paused")),
        "{:?}",
        status.warnings
    );

    // Sampling read the exception messages without consuming them.
    let left = fleet
        .drain(&fleet.spec.names().exception_queue(Stage::Payment))
        .await;
    assert_eq!(left.len(), 3);
}

#[tokio::test]
async fn one_policy_live_is_no_drift() {
    let fleet = Fleet::new().await;
    let ours = fleet.policy.id().to_string();
    fleet
        .store
        .write_heartbeat(
            &heartbeat(
                "inventory-worker@a/1",
                "inventory",
                &ours,
                BreakerState::Closed,
            ),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let status = orderflow_ops::status(
        &fleet.target,
        StatusOptions {
            exception_sample: 0,
        },
    )
    .await
    .unwrap();
    assert!(!status.policy_drift);
    assert!(
        !status.warnings.iter().any(|w| w.contains("DRIFT")),
        "{:?}",
        status.warnings
    );
    assert_eq!(status.stages[0].workers, 1);
}

#[tokio::test]
async fn an_order_shows_its_outcomes_ids_timeline_and_next_steps() {
    let fleet = Fleet::new().await;
    let id = fleet
        .order(
            "o-show",
            &[
                to(OrderState::Reserved)
                    .made(Stage::Inventory, "res-1")
                    .outcome(Stage::Inventory, FailureClass::Success, Certainty::Applied),
                to(OrderState::PaymentPending)
                    .because("timeout / unknown")
                    .outcome(Stage::Payment, FailureClass::Timeout, Certainty::Unknown),
                to(OrderState::Escalated).because("payment_unresolved"),
            ],
        )
        .await;
    fleet.store.incr_attempt(&id, Stage::Payment).await.unwrap();
    let view = orderflow_ops::show_order(&fleet.target, "o-show")
        .await
        .unwrap();
    assert_eq!(view.state, OrderState::Escalated);
    assert_eq!(view.reason.as_deref(), Some("payment_unresolved"));
    assert_eq!(view.escalated_from, Some(OrderState::PaymentPending));
    assert_eq!(view.version, 4);
    assert_eq!(view.correlation_id, "corr-o-show");
    let inventory = &view.stages[0];
    assert_eq!(inventory.downstream_id.as_deref(), Some("res-1"));
    assert_eq!(inventory.certainty, Some(Certainty::Applied));
    let payment = &view.stages[1];
    assert_eq!(
        (payment.class, payment.certainty),
        (Some(FailureClass::Timeout), Some(Certainty::Unknown))
    );
    assert_eq!(payment.runs, 1);
    let moves: Vec<(Option<OrderState>, OrderState)> =
        view.timeline.iter().map(|e| (e.from, e.to)).collect();
    assert_eq!(
        moves,
        [
            (None, OrderState::Received),
            (Some(OrderState::Received), OrderState::Reserved),
            (Some(OrderState::Reserved), OrderState::PaymentPending),
            (Some(OrderState::PaymentPending), OrderState::Escalated),
        ]
    );
    let last = view.timeline.last().unwrap();
    assert_eq!(last.actor, "worker@test/1");
    assert_eq!(last.rule.as_deref(), Some("test.rule"));
    assert_eq!(last.policy_id, fleet.policy.id().to_string());
    assert!(
        view.next_steps[0].contains("order resolve o-show --stage payment"),
        "{:?}",
        view.next_steps
    );
    // It serializes for --json and the console.
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["state"], "escalated");
    assert_eq!(json["timeline"][3]["to"], "escalated");
}

#[tokio::test]
async fn an_unknown_order_names_the_namespaces_that_exist() {
    let fleet = Fleet::new().await;
    // Another namespace with an order, of this test's own (not one that
    // happens to be there from a test running beside it).
    let other = Fleet::new().await;
    other.order("o-elsewhere", &[]).await;
    let err = orderflow_ops::show_order(&fleet.target, "o-none")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), orderflow_ops::Kind::Invalid);
    let text = err.to_string();
    assert!(
        text.contains("o-none") && text.contains(&fleet.ns),
        "{text}"
    );
    assert!(
        text.contains("namespaces with some") && text.contains(&other.ns),
        "{text}"
    );
    let bad = orderflow_ops::show_order(&fleet.target, "no spaces")
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), orderflow_ops::Kind::Invalid);
}

#[tokio::test]
async fn orders_are_listed_by_state_reason_and_age() {
    let fleet = Fleet::new().await;
    for (id, reason) in [
        ("o-1", "payment_unresolved"),
        ("o-2", "stuck"),
        ("o-3", "payment_unresolved: timeout"),
    ] {
        fleet
            .order(id, &[to(OrderState::Escalated).because(reason)])
            .await;
    }
    fleet.order("o-4", &[]).await;
    let list = |reason: Option<&str>, older_than: Option<Duration>, limit: usize| ListFilter {
        state: OrderState::Escalated,
        reason: reason.map(str::to_owned),
        older_than,
        limit,
    };
    let all = orderflow_ops::list_orders(&fleet.target, &list(None, None, 10))
        .await
        .unwrap();
    let ids: Vec<&str> = all.orders.iter().map(|o| o.order_id.as_str()).collect();
    assert_eq!(ids, ["o-1", "o-2", "o-3"], "longest in the state first");
    assert!(!all.truncated);

    let unresolved =
        orderflow_ops::list_orders(&fleet.target, &list(Some("payment_unresolved"), None, 10))
            .await
            .unwrap();
    let ids: Vec<&str> = unresolved
        .orders
        .iter()
        .map(|o| o.order_id.as_str())
        .collect();
    assert_eq!(ids, ["o-1", "o-3"]);

    let first = orderflow_ops::list_orders(&fleet.target, &list(None, None, 1))
        .await
        .unwrap();
    assert_eq!(first.orders.len(), 1);
    assert!(first.truncated);

    let old = orderflow_ops::list_orders(
        &fleet.target,
        &list(None, Some(Duration::from_secs(600)), 10),
    )
    .await
    .unwrap();
    assert!(
        old.orders.is_empty(),
        "none has been escalated for 10 minutes"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let aged =
        orderflow_ops::list_orders(&fleet.target, &list(None, Some(Duration::from_secs(1)), 10))
            .await
            .unwrap();
    assert_eq!(aged.orders.len(), 3);
}

/// Needs the Redis Cluster of `scripts/clusters.sh up`
/// (`ORDERFLOW_TEST_REDIS_CLUSTER_URL`).
#[tokio::test]
async fn the_status_shows_the_redis_cluster_masters_slots_and_replicas() {
    let url = std::env::var("ORDERFLOW_TEST_REDIS_CLUSTER_URL")
        .unwrap_or_else(|_| "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".into());
    let target = Target::connect(Settings {
        namespace: format!("t-{}", uuid::Uuid::new_v4().simple()),
        redis_url: url.clone(),
        amqp_url: crate::common::amqp_url(),
        policy: Policy::default_policy(),
        apis: None,
    })
    .await
    .unwrap_or_else(|e| {
        panic!("cannot reach the Redis Cluster at {url}: {e}\nstart it: scripts/clusters.sh up")
    });
    let status = orderflow_ops::status(&target, StatusOptions::default())
        .await
        .unwrap();
    let RedisStatus::Cluster { state, masters, .. } = &status.redis else {
        panic!("not shown as a cluster: {:?}", status.redis);
    };
    assert_eq!(state, "ok");
    let serving: Vec<_> = masters.iter().filter(|m| m.slot_count > 0).collect();
    assert_eq!(serving.len(), 3, "{masters:?}");
    assert_eq!(serving.iter().map(|m| m.slot_count).sum::<u32>(), 16384);
    for master in serving {
        assert!(master.up, "{master:?}");
        assert_eq!(master.replicas.len(), 1, "{master:?}");
        assert!(master.replicas[0].up, "{master:?}");
    }
    assert!(
        !status
            .warnings
            .iter()
            .any(|w| w.starts_with("Redis ") || w.starts_with("the Redis Cluster")),
        "{:?}",
        status.warnings
    );
}
