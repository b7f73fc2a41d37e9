//! The streams: every customer event sent to `{ns}.events` lands on the
//! events stream, and every reader of it gets every event, from the offset
//! it chooses; a subscriber's own queue bound to the exchange still gets
//! its events.

use crate::common::{Fixture, amqp_url};
use orderflow_broker::stream::{self, Offset, StreamMessage};
use orderflow_broker::{Meta, Outgoing, Publisher};
use std::ops::ControlFlow;
use std::time::Duration;

const EVENTS: usize = 50;

/// Reads `stream` from `from` until `want` messages came (or it caught up).
async fn read(fixture: &Fixture, name: &str, from: Offset, want: usize) -> Vec<StreamMessage> {
    let mut got = Vec::new();
    stream::read(
        &fixture.connection,
        name,
        from,
        Duration::from_secs(5),
        |m| {
            got.push(m);
            if got.len() >= want {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .await
    .expect("read the stream");
    got
}

async fn publish_events(fixture: &Fixture, publisher: &Publisher, range: std::ops::Range<usize>) {
    for n in range {
        publisher
            .publish(Outgoing {
                exchange: fixture.spec.names().events_exchange(),
                routing_key: "order.paid".into(),
                body: format!("{{\"n\":{n}}}").into_bytes(),
                meta: Meta {
                    message_id: Some(format!("event-{n}")),
                    order_id: Some(format!("o-{n}")),
                    ..Meta::default()
                },
            })
            .await
            .expect("confirmed");
    }
}

#[tokio::test]
async fn two_subscribers_of_the_events_stream_each_receive_every_event() {
    let fixture = Fixture::new("").await;
    let publisher = Publisher::connect(&amqp_url(), fixture.namespace())
        .await
        .unwrap();
    publish_events(&fixture, &publisher, 0..EVENTS).await;
    let name = fixture.spec.events().name.clone();
    let (first, second) = tokio::join!(
        read(&fixture, &name, Offset::First, EVENTS),
        read(&fixture, &name, Offset::First, EVENTS)
    );
    for (who, got) in [("first", &first), ("second", &second)] {
        let ids: Vec<_> = got
            .iter()
            .map(|m| m.meta.message_id.clone().unwrap())
            .collect();
        let expected: Vec<_> = (0..EVENTS).map(|n| format!("event-{n}")).collect();
        assert_eq!(ids, expected, "{who} subscriber reads every event in order");
        assert!(got.iter().all(|m| m.routing_key == "order.paid"));
    }
    // A reader may start anywhere: at an offset it was given...
    let from_ten = read(&fixture, &name, Offset::Exact(first[10].offset), 5).await;
    assert_eq!(from_ten[0].meta.message_id.as_deref(), Some("event-10"));
    // ...or at the end, for what comes next.
    let reader = {
        let (connection, name) = (
            orderflow_broker::connect(&amqp_url()).await.unwrap(),
            name.clone(),
        );
        tokio::spawn(async move {
            let mut got = Vec::new();
            stream::read(
                &connection,
                &name,
                Offset::Next,
                Duration::from_secs(10),
                |m| {
                    got.push(m.meta.message_id.unwrap());
                    ControlFlow::Break(())
                },
            )
            .await
            .unwrap();
            got
        })
    };
    // Published until the reader, attached by then, has one.
    let mut n = EVENTS;
    while !reader.is_finished() {
        publish_events(&fixture, &publisher, n..n + 1).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let next = reader.await.unwrap();
    assert_eq!(next.len(), 1);
    assert_ne!(
        next[0], "event-0",
        "a `next` reader starts after what was there"
    );
    publisher.close().await;
}

#[tokio::test]
async fn a_subscriber_queue_bound_to_the_events_exchange_still_gets_its_events() {
    use lapin::options::{QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let fixture = Fixture::new("").await;
    let own = format!("{}.subscriber", fixture.namespace());
    let channel = fixture.connection.create_channel().await.unwrap();
    channel
        .queue_declare(
            own.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            own.as_str().into(),
            fixture.spec.names().events_exchange().as_str().into(),
            "order.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let publisher = Publisher::connect(&amqp_url(), fixture.namespace())
        .await
        .unwrap();
    publish_events(&fixture, &publisher, 0..3).await;
    let taken = fixture.take(&own, Duration::from_secs(5)).await;
    assert_eq!(taken.meta().message_id.as_deref(), Some("event-0"));
    let on_stream = read(&fixture, &fixture.spec.events().name, Offset::First, 3).await;
    assert_eq!(on_stream.len(), 3, "and the stream keeps them too");
    let _ = channel.close(200, "done".into()).await;
    publisher.close().await;
}
