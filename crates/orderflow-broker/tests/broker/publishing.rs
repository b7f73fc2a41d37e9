use crate::common::{Fixture, amqp_url};
use orderflow_broker::names::{ORDER_CANCEL, ORDER_PLACED};
use orderflow_broker::{Error, Meta, Outgoing, Publisher};
use orderflow_core::{Certainty, FailureClass, Stage};
use std::time::Duration;

fn meta(order: &str) -> Meta {
    Meta {
        message_id: Some(format!("msg-{order}")),
        correlation_id: Some(format!("corr-{order}")),
        timestamp: Some(1_700_000_000),
        stage: Some(Stage::Inventory),
        attempt: Some(2),
        first_attempt_at: Some(1_700_000_000_500),
        class: Some(FailureClass::Timeout),
        certainty: Some(Certainty::Unknown),
        reason: Some("deferred".into()),
        policy_id: Some("pol-000000000000".into()),
        last_error: Some("504".into()),
        order_id: Some(order.to_owned()),
        ..Meta::default()
    }
    .with_extra("orderflow-replay-id", "replay-1")
}

#[tokio::test]
async fn orders_route_to_inventory_with_every_header_intact() {
    let fixture = Fixture::new("").await;
    let publisher = Publisher::connect(&amqp_url(), fixture.namespace())
        .await
        .unwrap();
    let orders = fixture.spec.names().orders_exchange();
    for (key, order) in [(ORDER_PLACED, "o-1"), (ORDER_CANCEL, "o-2")] {
        publisher
            .publish(Outgoing {
                exchange: orders.clone(),
                routing_key: key.to_owned(),
                body: format!("{{\"order\":\"{order}\"}}").into_bytes(),
                meta: meta(order),
            })
            .await
            .unwrap();
    }
    let inventory = &fixture.spec.stage(Stage::Inventory).work;
    for order in ["o-1", "o-2"] {
        let got = fixture.take(inventory, Duration::from_secs(5)).await;
        assert_eq!(got.body(), format!("{{\"order\":\"{order}\"}}").as_bytes());
        let expected = Meta {
            content_type: Some("application/json".into()),
            ..meta(order)
        };
        assert_eq!(got.meta(), &expected);
        assert!(!got.redelivered());
        assert_eq!(got.exchange(), orders);
        assert!(got.latest_death().is_none());
    }
    publisher.close().await;
}

#[tokio::test]
async fn a_publish_nobody_routes_is_unroutable_not_success() {
    let fixture = Fixture::new("").await;
    let publisher = Publisher::connect(&amqp_url(), fixture.namespace())
        .await
        .unwrap();
    let orders = fixture.spec.names().orders_exchange();
    let err = publisher
        .publish(Outgoing {
            exchange: orders.clone(),
            routing_key: "order.unknown".into(),
            body: b"{}".to_vec(),
            meta: Meta::default(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unroutable { exchange, routing_key }
            if *exchange == orders && routing_key == "order.unknown"),
        "{err:?}"
    );
    let missing = format!("{}.no-such-queue", fixture.namespace());
    let err = publisher
        .to_queue(&missing, b"{}".to_vec(), Meta::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unroutable { .. }), "{err:?}");
    assert!(err.to_string().contains("the default exchange"), "{err}");
    publisher.close().await;
}

/// Many tasks on one publisher, half of them unroutable: each gets its own
/// answer (a returned message is never credited to another publish). Enough
/// of them that the broker confirms in batches that mix the two.
#[tokio::test]
async fn concurrent_publishes_each_get_their_own_confirm() {
    let fixture = Fixture::new("").await;
    let publisher = Publisher::connect(&amqp_url(), fixture.namespace())
        .await
        .unwrap();
    let payment = fixture.spec.stage(Stage::Payment).work.clone();
    let missing = format!("{}.no-such-queue", fixture.namespace());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..600u32 {
        let publisher = publisher.clone();
        let routable = i % 2 == 0;
        let queue = if routable {
            payment.clone()
        } else {
            missing.clone()
        };
        tasks.spawn(async move {
            let meta = Meta {
                message_id: Some(format!("m-{i}")),
                ..Meta::default()
            };
            (
                routable,
                publisher.to_queue(&queue, b"{}".to_vec(), meta).await,
            )
        });
    }
    let mut delivered = 0;
    while let Some(joined) = tasks.join_next().await {
        let (routable, result) = joined.unwrap();
        match (routable, result) {
            (true, Ok(())) => delivered += 1,
            (false, Err(Error::Unroutable { .. })) => {}
            (routable, other) => panic!("routable={routable} but got {other:?}"),
        }
    }
    assert_eq!(delivered, 300);
    assert_eq!(fixture.depth(&payment).await, 300);
    publisher.close().await;
}

/// Callers that stop waiting for their confirm do not hold up the channel:
/// each of those publishes is still sent and settled, and the next one is
/// answered as usual.
#[tokio::test]
async fn a_publish_whose_caller_stops_waiting_is_still_settled() {
    let fixture = Fixture::new("").await;
    let publisher = Publisher::connect(&amqp_url(), fixture.namespace())
        .await
        .unwrap();
    let payment = fixture.spec.stage(Stage::Payment).work.clone();
    for i in 0..50u32 {
        let meta = Meta {
            message_id: Some(format!("gone-{i}")),
            ..Meta::default()
        };
        let send = publisher.to_queue(&payment, b"{}".to_vec(), meta);
        // Polled until it waits for its confirm, then dropped.
        let _ = tokio::time::timeout(Duration::from_micros(1), send).await;
    }
    publisher
        .to_queue(&payment, b"{}".to_vec(), Meta::default())
        .await
        .expect("the next publish is confirmed");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fixture.depth(&payment).await < 51 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fixture.depth(&payment).await, 51);
    publisher.close().await;
}

/// A queue that refuses new messages (full, `reject-publish`) nacks them.
#[tokio::test]
async fn a_refused_message_is_nacked() {
    use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
    use lapin::types::{AMQPValue, FieldTable};

    let fixture = Fixture::new("").await;
    let full = format!("{}.tiny", fixture.namespace());
    let channel = fixture.connection.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(1));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    channel
        .queue_declare(full.as_str().into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();

    let publisher = Publisher::connect(&amqp_url(), fixture.namespace())
        .await
        .unwrap();
    publisher
        .to_queue(&full, b"1".to_vec(), Meta::default())
        .await
        .expect("the first message fits");
    let err = publisher
        .to_queue(&full, b"2".to_vec(), Meta::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Nacked { routing_key, .. } if *routing_key == full),
        "{err:?}"
    );
    publisher.close().await;
    channel
        .queue_delete(full.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

/// A channel nacked again and again is replaced by a fresh one: RabbitMQ
/// 3.10 nacks every publish of a channel to a quorum queue whose leader
/// was re-elected until the channel is reopened. Here a full queue does
/// the nacking; the publisher's connection then holds the fresh channel
/// beside the worn-out one (closed once its confirms are done).
#[tokio::test]
async fn a_channel_nacked_again_and_again_is_reopened() {
    use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
    use lapin::types::{AMQPValue, FieldTable};

    let fixture = Fixture::new("").await;
    let full = format!("{}.tiny", fixture.namespace());
    let channel = fixture.connection.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(1));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    channel
        .queue_declare(full.as_str().into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();

    let name = format!("{}.nacked", fixture.namespace());
    let publisher = Publisher::connect(&amqp_url(), &name).await.unwrap();
    publisher
        .to_queue(&full, b"1".to_vec(), Meta::default())
        .await
        .expect("the first message fits");
    assert_eq!(crate::common::channels_of(&name), 1);
    for _ in 0..3 {
        let err = publisher
            .to_queue(&full, b"more".to_vec(), Meta::default())
            .await
            .unwrap_err();
        assert!(matches!(&err, Error::Nacked { .. }), "{err:?}");
    }
    // The next publish goes out on a fresh channel.
    let _ = publisher
        .to_queue(&full, b"more".to_vec(), Meta::default())
        .await;
    crate::common::eventually(Duration::from_secs(10), "a second channel", || {
        let name = name.clone();
        async move {
            tokio::task::spawn_blocking(move || crate::common::channels_of(&name))
                .await
                .unwrap()
                == 2
        }
    })
    .await;
    publisher.close().await;
    channel
        .queue_delete(full.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}
