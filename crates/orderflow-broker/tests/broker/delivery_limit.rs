//! The delivery limit counts attempts a worker made, not messages it was
//! merely sent: a consumer that pauses and resumes (or shuts down and
//! starts again) far more often than the limit, with a prefetch larger than
//! it works at once, must dead-letter nothing that was never worked. (Issue
//! 14, item 7: prefetched messages handed back on a pause counted.)

use crate::common::{Fixture, amqp_url, eventually, stop};
use orderflow_broker::{Consumer, Handler, Incoming, Meta, Publisher, Settlement, admin};
use orderflow_core::Stage;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const LIMIT: u32 = 4;
const MESSAGES: u32 = 300;

/// Works one message at a time, a little while each, and acks it.
struct Worker {
    done: Arc<Mutex<HashSet<String>>>,
}

impl Handler for Worker {
    async fn handle(&self, delivery: Incoming, _: &Publisher) -> Settlement {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let id = delivery.meta().message_id.clone().unwrap_or_default();
        self.done.lock().unwrap().insert(id);
        Settlement::Ack
    }
}

#[tokio::test]
async fn pausing_often_with_a_large_prefetch_dead_letters_nothing_unworked() {
    let fixture = Fixture::new(&format!("[broker]\ndelivery_limit = {LIMIT}\n")).await;
    let queue = fixture.spec.stage(Stage::Payment).work.clone();
    let exceptions = fixture.spec.stage(Stage::Payment).exceptions.clone();
    let publisher = Publisher::connect(&amqp_url(), "delivery-limit-test")
        .await
        .unwrap();
    for i in 0..MESSAGES {
        let meta = Meta {
            message_id: Some(format!("m-{i}")),
            ..Meta::default()
        };
        publisher
            .to_queue(&queue, format!("{{\"n\":{i}}}").into_bytes(), meta)
            .await
            .unwrap();
    }
    publisher.close().await;

    let done = Arc::new(Mutex::new(HashSet::new()));
    let (pause, paused) = watch::channel(false);
    let token = CancellationToken::new();
    let mut config = fixture.consumer_config(&queue);
    config.prefetch = 20;
    config.concurrency = 1;
    let run = tokio::spawn(Consumer::run_pausable(
        config,
        fixture.spec.clone(),
        Worker { done: done.clone() },
        token.clone(),
        paused,
    ));
    let consumers = || async {
        admin::queue_stats(&fixture.connection, &queue)
            .await
            .unwrap()
            .consumers
    };

    // Three times the limit: each pause leaves most of the prefetch unworked.
    let mut pauses = 0;
    while pauses < 3 * LIMIT && done.lock().unwrap().len() < MESSAGES as usize {
        eventually(Duration::from_secs(10), "the consumer attaches", || async {
            consumers().await == 1
        })
        .await;
        let before = done.lock().unwrap().len();
        eventually(Duration::from_secs(10), "it works a message", || async {
            done.lock().unwrap().len() > before
        })
        .await;
        pause.send_replace(true);
        eventually(Duration::from_secs(10), "the consumer detaches", || async {
            consumers().await == 0
        })
        .await;
        pauses += 1;
        let dead = fixture.settled_depth(&exceptions).await;
        assert_eq!(
            dead,
            0,
            "after {pauses} pauses (limit {LIMIT}), {dead} messages were dead-lettered; {} of {MESSAGES} worked",
            done.lock().unwrap().len()
        );
        pause.send_replace(false);
    }
    eventually(
        Duration::from_secs(20),
        "every message is worked",
        || async { done.lock().unwrap().len() == MESSAGES as usize },
    )
    .await;
    assert_eq!(fixture.settled_depth(&exceptions).await, 0);
    assert_eq!(fixture.settled_depth(&queue).await, 0);
    stop(token, run).await;
}
