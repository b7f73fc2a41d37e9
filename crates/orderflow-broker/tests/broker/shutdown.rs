use crate::common::{Fixture, amqp_url, stop};
use orderflow_broker::{Handler, Incoming, Meta, Publisher, Settlement};
use orderflow_core::Stage;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Reports when it starts, works for `work`, then acks.
struct Slow {
    work: Duration,
    started: mpsc::UnboundedSender<Incoming>,
    finished: Arc<AtomicU32>,
}

impl Handler for Slow {
    async fn handle(&self, delivery: Incoming, _: &Publisher) -> Settlement {
        let _ = self.started.send(delivery);
        tokio::time::sleep(self.work).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        Settlement::Ack
    }
}

async fn fill(fixture: &Fixture, queue: &str, n: u32) {
    let publisher = Publisher::connect(&amqp_url(), &format!("{}.fill", fixture.namespace()))
        .await
        .unwrap();
    for i in 0..n {
        let meta = Meta {
            message_id: Some(format!("s-{i}")),
            ..Meta::default()
        };
        publisher
            .to_queue(queue, b"{}".to_vec(), meta)
            .await
            .unwrap();
    }
    publisher.close().await;
}

#[tokio::test]
async fn in_flight_handlers_finish_and_are_acked_on_shutdown() {
    let fixture = Fixture::new("").await;
    let work = fixture.spec.stage(Stage::Inventory).work.clone();
    fill(&fixture, &work, 3).await;
    let (started, mut starts) = mpsc::unbounded_channel();
    let finished = Arc::new(AtomicU32::new(0));
    let mut config = fixture.consumer_config(&work);
    config.concurrency = 3;
    config.prefetch = 3;
    config.shutdown_grace = Duration::from_secs(10);
    let (token, run) = fixture.spawn_consumer(
        config,
        Slow {
            work: Duration::from_millis(700),
            started,
            finished: finished.clone(),
        },
    );
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(10), starts.recv())
            .await
            .expect("three handlers start");
    }
    let stopping = Instant::now();
    stop(token, run).await;
    assert_eq!(finished.load(Ordering::SeqCst), 3, "all three finished");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown waited for the handlers, not for the whole grace period"
    );
    // Closing the channel would have requeued anything left unacked.
    assert_eq!(fixture.settled_depth(&work).await, 0);
}

#[tokio::test]
async fn a_handler_past_the_grace_period_is_not_acked_and_comes_back() {
    let fixture = Fixture::new("").await;
    let work = fixture.spec.stage(Stage::Payment).work.clone();
    fill(&fixture, &work, 1).await;
    let (started, mut starts) = mpsc::unbounded_channel();
    let finished = Arc::new(AtomicU32::new(0));
    let mut config = fixture.consumer_config(&work);
    config.shutdown_grace = Duration::from_millis(300);
    let (token, run) = fixture.spawn_consumer(
        config.clone(),
        Slow {
            work: Duration::from_secs(30),
            started,
            finished: finished.clone(),
        },
    );
    let first = tokio::time::timeout(Duration::from_secs(10), starts.recv())
        .await
        .expect("the handler starts")
        .unwrap();
    assert!(!first.redelivered());
    let stopping = Instant::now();
    stop(token, run).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "stopped after the grace period, took {:?}",
        stopping.elapsed()
    );
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    assert_eq!(
        fixture.settled_depth(&work).await,
        1,
        "back in the queue, unacked"
    );

    // The next consumer gets it again, marked as redelivered.
    let (started, mut starts) = mpsc::unbounded_channel();
    let (token, run) = fixture.spawn_consumer(
        config,
        Slow {
            work: Duration::ZERO,
            started,
            finished: finished.clone(),
        },
    );
    let again = tokio::time::timeout(Duration::from_secs(10), starts.recv())
        .await
        .expect("redelivered to the next consumer")
        .unwrap();
    assert!(again.redelivered());
    assert_eq!(again.meta().message_id.as_deref(), Some("s-0"));
    crate::common::eventually(Duration::from_secs(5), "the redelivery is handled", || {
        let finished = finished.clone();
        async move { finished.load(Ordering::SeqCst) == 1 }
    })
    .await;
    stop(token, run).await;
    assert_eq!(fixture.settled_depth(&work).await, 0);
}
