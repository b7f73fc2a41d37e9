use crate::common::{Fixture, broker, policy};
use orderflow_broker::{Error, TopologySpec, admin, topology};
use orderflow_core::Stage;

#[tokio::test]
async fn declaring_twice_is_fine_and_a_changed_delivery_limit_is_a_clear_conflict() {
    let fixture = Fixture::new("").await;
    // Fixture::new declared once; again is a no-op.
    topology::declare(&fixture.connection, &fixture.spec)
        .await
        .expect("a second declare is idempotent");
    let inventory = fixture.spec.stage(Stage::Inventory).work.clone();
    assert_eq!(fixture.depth(&inventory).await, 0);

    let changed = TopologySpec::from_policy(
        fixture.namespace(),
        &policy("[broker]\ndelivery_limit = 4\n"),
    )
    .unwrap();
    let err = topology::declare(&fixture.connection, &changed)
        .await
        .expect_err("a different x-delivery-limit must not be accepted");
    let text = err.to_string();
    match &err {
        Error::TopologyConflict {
            queue, argument, ..
        } => {
            assert_eq!(queue, &inventory);
            assert_eq!(argument, "x-delivery-limit");
        }
        other => panic!("expected TopologyConflict, got {other:?}"),
    }
    for part in [
        inventory.as_str(),
        "x-delivery-limit",
        "rabbitmqctl delete_queue",
    ] {
        assert!(text.contains(part), "{text}");
    }

    // The refused declare closed only its own channel: the connection and
    // the existing queue are untouched.
    topology::declare(&fixture.connection, &fixture.spec)
        .await
        .expect("the original topology still declares");
    assert_eq!(fixture.depth(&inventory).await, 0);
}

#[tokio::test]
async fn new_delay_tiers_get_new_queues_instead_of_a_conflict() {
    let fixture = Fixture::new("").await;
    let retuned = TopologySpec::from_policy(
        fixture.namespace(),
        &policy("[stages.payment]\ndelay_tiers = [\"3s\", \"20s\"]\n"),
    )
    .unwrap();
    topology::declare(&fixture.connection, &retuned)
        .await
        .expect("changed tiers only add queues");
    let new_tier = &retuned.delay_queue(Stage::Payment, 0).queue;
    assert!(new_tier.ends_with(".payment.delay.3s"), "{new_tier}");
    assert_eq!(fixture.depth(new_tier).await, 0);
    topology::delete(&fixture.connection, &retuned)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_missing_queue_is_reported_by_name() {
    let connection = broker().await;
    let err = admin::queue_depth(&connection, "t-no-such-queue")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::QueueNotFound { queue } if queue == "t-no-such-queue"),
        "{err:?}"
    );
}

/// A worker started with an incompatible policy stops with the conflict
/// instead of reconnecting forever.
#[tokio::test]
async fn a_consumer_with_a_conflicting_topology_stops_with_the_conflict() {
    let fixture = Fixture::new("").await;
    let changed = TopologySpec::from_policy(
        fixture.namespace(),
        &policy("[broker]\ndelivery_limit = 5\n"),
    )
    .unwrap();
    let inventory = changed.stage(Stage::Inventory).work.clone();
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        orderflow_broker::Consumer::run(
            fixture.consumer_config(&inventory),
            changed,
            Never,
            tokio_util::sync::CancellationToken::new(),
        ),
    )
    .await
    .expect("the consumer gives up at once");
    assert!(
        matches!(&result, Err(Error::TopologyConflict { argument, .. }) if argument == "x-delivery-limit"),
        "{result:?}"
    );
}

struct Never;

impl orderflow_broker::Handler for Never {
    async fn handle(
        &self,
        _: orderflow_broker::Incoming,
        _: &orderflow_broker::Publisher,
    ) -> orderflow_broker::Settlement {
        unreachable!("nothing is consumed from a conflicting topology")
    }
}

/// The replica count applies when a queue is created; a queue that exists
/// with another count is taken as it is instead of refusing to start.
#[tokio::test]
async fn a_queue_keeps_the_replica_count_it_was_created_with() {
    let fixture = Fixture::new("[broker]\nquorum_replicas = 1\n").await;
    let more = TopologySpec::from_policy(
        fixture.namespace(),
        &policy("[broker]\nquorum_replicas = 5\n"),
    )
    .unwrap();
    topology::declare(&fixture.connection, &more)
        .await
        .unwrap_or_else(|e| panic!("{}", orderflow_broker::chain(&e)));
}

/// A queue an older orderflow declared, with no replica count, is taken as
/// it is.
#[tokio::test]
async fn a_queue_declared_without_a_replica_count_is_taken_as_it_is() {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable, LongString};

    let connection = broker().await;
    let namespace = format!("t-{}", uuid::Uuid::new_v4());
    let spec = TopologySpec::from_policy(&namespace, &policy("")).unwrap();
    let exceptions = spec.stage(Stage::Payment).exceptions.clone();
    let channel = connection.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(topology::EXCEPTION_DELIVERY_LIMIT),
    );
    channel
        .queue_declare(
            exceptions.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .unwrap();
    let declared = topology::declare(&connection, &spec).await;
    topology::delete(&connection, &spec).await.unwrap();
    declared.unwrap_or_else(|e| panic!("{}", orderflow_broker::chain(&e)));
}
