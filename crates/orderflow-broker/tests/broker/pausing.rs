//! A paused consumer takes nothing (messages wait in the queue, the
//! consumer is gone from it) and consumes again once resumed; peeking at a
//! queue leaves every message in it.

use crate::common::{Fixture, amqp_url, eventually, stop};
use orderflow_broker::{Consumer, Handler, Incoming, Meta, Publisher, Settlement, admin};
use orderflow_core::Stage;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Counts what it handles, taking a while over each.
struct Slow {
    handled: Arc<AtomicU32>,
}

impl Handler for Slow {
    async fn handle(&self, _: Incoming, _: &Publisher) -> Settlement {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.handled.fetch_add(1, Ordering::SeqCst);
        Settlement::Ack
    }
}

async fn publish(queue: &str, n: u32) {
    let publisher = Publisher::connect(&amqp_url(), "pausing-test")
        .await
        .unwrap();
    for i in 0..n {
        let meta = Meta {
            message_id: Some(format!("m-{i}")),
            ..Meta::default()
        };
        publisher
            .to_queue(queue, format!("{{\"n\":{i}}}").into_bytes(), meta)
            .await
            .unwrap();
    }
    publisher.close().await;
}

#[tokio::test]
async fn a_paused_consumer_takes_nothing_until_resumed() {
    let fixture = Fixture::new("").await;
    let queue = fixture.spec.stage(Stage::Payment).work.clone();
    let handled = Arc::new(AtomicU32::new(0));
    let (pause, paused) = watch::channel(false);
    let token = CancellationToken::new();
    let run = tokio::spawn(Consumer::run_pausable(
        fixture.consumer_config(&queue),
        fixture.spec.clone(),
        Slow {
            handled: handled.clone(),
        },
        token.clone(),
        paused,
    ));
    let stats = || admin::queue_stats(&fixture.connection, &queue);
    eventually(Duration::from_secs(10), "the consumer attaches", || async {
        stats().await.unwrap().consumers == 1
    })
    .await;

    // In flight when the pause comes: finished and settled, not lost.
    publish(&queue, 2).await;
    eventually(
        Duration::from_secs(10),
        "the first deliveries start",
        || async { stats().await.unwrap().messages == 0 },
    )
    .await;
    pause.send_replace(true);
    eventually(Duration::from_secs(10), "the consumer detaches", || async {
        stats().await.unwrap().consumers == 0
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "in-flight work finishes",
        || async { handled.load(Ordering::SeqCst) == 2 },
    )
    .await;
    assert_eq!(fixture.settled_depth(&queue).await, 0, "and was acked");

    // Paused: new messages wait in the queue, for no consumer is attached
    // that the broker could hand them to.
    publish(&queue, 3).await;
    assert_eq!(
        stats().await.unwrap(),
        admin::QueueStats {
            messages: 3,
            consumers: 0
        }
    );
    assert_eq!(handled.load(Ordering::SeqCst), 2);

    pause.send_replace(false);
    eventually(
        Duration::from_secs(10),
        "resumed, it consumes again",
        || async { handled.load(Ordering::SeqCst) == 5 },
    )
    .await;
    assert_eq!(fixture.settled_depth(&queue).await, 0);

    // Shutdown while paused returns at once.
    pause.send_replace(true);
    eventually(Duration::from_secs(10), "paused again", || async {
        stats().await.unwrap().consumers == 0
    })
    .await;
    stop(token, run).await;
}

#[tokio::test]
async fn peeking_leaves_the_messages_in_the_queue() {
    let fixture = Fixture::new("").await;
    let queue = fixture.spec.stage(Stage::Shipping).exceptions.clone();
    publish(&queue, 5).await;
    let peeked = admin::peek(&fixture.connection, &queue, 3).await.unwrap();
    assert_eq!(peeked.len(), 3);
    assert_eq!(peeked[0].body(), b"{\"n\":0}");
    assert_eq!(fixture.settled_depth(&queue).await, 5);
    let all = admin::peek(&fixture.connection, &queue, 100).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(fixture.settled_depth(&queue).await, 5);
    let missing = admin::peek(&fixture.connection, "no-such-queue-here", 1).await;
    assert!(matches!(
        missing,
        Err(orderflow_broker::Error::QueueNotFound { .. })
    ));
}
