use crate::common::{Fixture, amqp_url, eventually, stop};
use orderflow_broker::{Handler, Incoming, Meta, Publisher, Settlement};
use orderflow_core::Stage;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn meta(order: &str) -> Meta {
    Meta {
        message_id: Some(format!("msg-{order}")),
        correlation_id: Some(format!("corr-{order}")),
        stage: Some(Stage::Inventory),
        attempt: Some(1),
        order_id: Some(order.to_owned()),
        reason: Some("first try".into()),
        ..Meta::default()
    }
}

async fn publisher(fixture: &Fixture) -> Publisher {
    Publisher::connect(
        &amqp_url(),
        &format!("{}.test-publisher", fixture.namespace()),
    )
    .await
    .unwrap()
}

/// Publishes the next stage's message, then acks: the step every worker takes.
struct Forward {
    to: String,
    done: mpsc::UnboundedSender<()>,
}

impl Handler for Forward {
    async fn handle(&self, delivery: Incoming, publisher: &Publisher) -> Settlement {
        let (body, meta) = delivery.into_parts();
        let next = Meta {
            stage: Some(Stage::Payment),
            ..meta
        };
        let settlement = match publisher.to_queue(&self.to, body, next).await {
            Ok(()) => Settlement::Ack,
            Err(_) => Settlement::Requeue,
        };
        let _ = self.done.send(());
        settlement
    }
}

#[tokio::test]
async fn the_next_message_is_confirmed_and_the_input_acked() {
    let fixture = Fixture::new("").await;
    let inventory = fixture.spec.stage(Stage::Inventory).work.clone();
    let payment = fixture.spec.stage(Stage::Payment).work.clone();
    publisher(&fixture)
        .await
        .to_queue(&inventory, b"{\"n\":1}".to_vec(), meta("o-1"))
        .await
        .unwrap();

    let (done, mut handled) = mpsc::unbounded_channel();
    let (token, run) = fixture.spawn_consumer(
        fixture.consumer_config(&inventory),
        Forward {
            to: payment.clone(),
            done,
        },
    );
    tokio::time::timeout(Duration::from_secs(10), handled.recv())
        .await
        .expect("handled within 10 s");
    // The published copy is confirmed before the handler returns.
    assert_eq!(fixture.depth(&payment).await, 1);
    stop(token, run).await;
    // Stopping closed the channel: an unacked input would be back.
    assert_eq!(fixture.settled_depth(&inventory).await, 0);
    let next = fixture.take(&payment, Duration::from_secs(1)).await;
    assert_eq!(next.body(), b"{\"n\":1}");
    assert_eq!(next.meta().stage, Some(Stage::Payment));
    assert_eq!(next.meta().order_id.as_deref(), Some("o-1"));
}

/// Fails the first delivery (by panicking or asking for a requeue), then
/// reports the second and never finishes it.
struct FailOnce {
    panic: bool,
    calls: AtomicU32,
    second: mpsc::UnboundedSender<Incoming>,
}

impl Handler for FailOnce {
    async fn handle(&self, delivery: Incoming, _: &Publisher) -> Settlement {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            if self.panic {
                panic!("handler bug on purpose");
            }
            return Settlement::Requeue;
        }
        let _ = self.second.send(delivery);
        std::future::pending().await
    }
}

async fn failed_input_is_not_lost(panic: bool) {
    let fixture = Fixture::new("").await;
    let inventory = fixture.spec.stage(Stage::Inventory).work.clone();
    publisher(&fixture)
        .await
        .to_queue(&inventory, b"{}".to_vec(), meta("o-2"))
        .await
        .unwrap();
    let (second, mut seconds) = mpsc::unbounded_channel();
    let mut config = fixture.consumer_config(&inventory);
    config.shutdown_grace = Duration::from_millis(200);
    let (token, run) = fixture.spawn_consumer(
        config,
        FailOnce {
            panic,
            calls: AtomicU32::new(0),
            second,
        },
    );
    let again = tokio::time::timeout(Duration::from_secs(10), seconds.recv())
        .await
        .expect("the failed message comes back")
        .unwrap();
    assert!(again.redelivered());
    assert_eq!(again.delivery_count(), Some(1));
    assert_eq!(
        again.meta(),
        &Meta {
            content_type: Some("application/json".into()),
            ..meta("o-2")
        }
    );
    stop(token, run).await;
    assert_eq!(
        fixture.settled_depth(&inventory).await,
        1,
        "the unfinished message is back in its queue"
    );
}

#[tokio::test]
async fn a_panicking_handler_leaves_its_message_in_the_queue() {
    failed_input_is_not_lost(true).await;
}

#[tokio::test]
async fn a_requeued_message_stays_in_the_queue() {
    failed_input_is_not_lost(false).await;
}

struct Always {
    settlement: Settlement,
    calls: Arc<AtomicU32>,
}

impl Handler for Always {
    async fn handle(&self, _: Incoming, _: &Publisher) -> Settlement {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.settlement
    }
}

#[tokio::test]
async fn a_rejected_message_is_dead_lettered_to_the_exception_queue() {
    let fixture = Fixture::new("").await;
    let queues = fixture.spec.stage(Stage::Payment).clone();
    publisher(&fixture)
        .await
        .to_queue(&queues.work, b"{\"bad\":true}".to_vec(), meta("o-3"))
        .await
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let (token, run) = fixture.spawn_consumer(
        fixture.consumer_config(&queues.work),
        Always {
            settlement: Settlement::Reject,
            calls: calls.clone(),
        },
    );
    let dead = fixture
        .take(&queues.exceptions, Duration::from_secs(10))
        .await;
    stop(token, run).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "rejected once, never retried"
    );
    assert_eq!(dead.body(), b"{\"bad\":true}");
    assert_eq!(dead.meta().order_id.as_deref(), Some("o-3"));
    assert_eq!(dead.meta().reason.as_deref(), Some("first try"));
    let death = dead.latest_death().expect("an x-death entry");
    assert_eq!(death.reason, "rejected");
    assert_eq!(death.queue, queues.work);
    assert_eq!(death.count, 1);
    assert_eq!(fixture.settled_depth(&queues.work).await, 0);
}

#[tokio::test]
async fn a_message_past_the_delivery_limit_lands_in_the_exception_queue() {
    const LIMIT: u32 = 2;
    let fixture = Fixture::new(
        "[broker]\ndelivery_limit = 2\n\
         [downstreams.inventory]\nretry = { max_attempts = 1, base = \"100ms\", cap = \"1s\", jitter = true }\n\
         [downstreams.payment]\nretry = { max_attempts = 1, base = \"100ms\", cap = \"1s\", jitter = true }\n\
         [downstreams.shipping]\nretry = { max_attempts = 1, base = \"100ms\", cap = \"1s\", jitter = true }\n",
    )
    .await;
    let queues = fixture.spec.stage(Stage::Inventory).clone();
    publisher(&fixture)
        .await
        .to_queue(&queues.work, b"{\"poison\":true}".to_vec(), meta("o-4"))
        .await
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let (token, run) = fixture.spawn_consumer(
        fixture.consumer_config(&queues.work),
        Always {
            settlement: Settlement::Requeue,
            calls: calls.clone(),
        },
    );
    let dead = fixture
        .take(&queues.exceptions, Duration::from_secs(10))
        .await;
    stop(token, run).await;
    // The first delivery plus LIMIT redeliveries, then the broker gives up.
    assert_eq!(calls.load(Ordering::SeqCst), LIMIT + 1);
    assert_eq!(dead.body(), b"{\"poison\":true}");
    assert_eq!(dead.meta().message_id.as_deref(), Some("msg-o-4"));
    assert_eq!(dead.meta().attempt, Some(1));
    let death = dead.latest_death().expect("an x-death entry");
    assert_eq!(death.queue, queues.work);
    assert_eq!(death.reason, "delivery_limit");
    assert_eq!(death.count, 1);
}

#[tokio::test]
async fn a_delayed_message_returns_to_its_work_queue_after_the_tier() {
    let fixture = Fixture::new("[stages.shipping]\ndelay_tiers = [\"200ms\", \"1s\"]\n").await;
    let tier = fixture.spec.delay_queue(Stage::Shipping, 0).clone();
    assert_eq!(tier.delay, Duration::from_millis(200));
    assert!(
        tier.queue.ends_with(".shipping.delay.200ms"),
        "{}",
        tier.queue
    );
    let work = fixture.spec.stage(Stage::Shipping).work.clone();
    let sent = Meta {
        stage: Some(Stage::Shipping),
        attempt: Some(3),
        first_attempt_at: Some(1_700_000_000_000),
        ..meta("o-5")
    }
    .with_extra("orderflow-replay-id", "r-1");

    let started = Instant::now();
    publisher(&fixture)
        .await
        .to_queue(&tier.queue, b"{\"later\":true}".to_vec(), sent.clone())
        .await
        .unwrap();
    let back = fixture.take(&work, Duration::from_secs(5)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(180),
        "back after {waited:?}"
    );
    assert_eq!(back.body(), b"{\"later\":true}");
    assert_eq!(
        back.meta(),
        &Meta {
            content_type: Some("application/json".into()),
            ..sent
        }
    );
    let death = back.latest_death().expect("the broker records the expiry");
    assert_eq!(death.reason, "expired");
    assert_eq!(death.queue, tier.queue);
    assert_eq!(fixture.depth(&tier.queue).await, 0);
}

/// Keeps the consumer's concurrency bound.
struct Gauge {
    now: AtomicU32,
    peak: AtomicU32,
    done: Arc<AtomicU32>,
}

impl Handler for Gauge {
    async fn handle(&self, _: Incoming, _: &Publisher) -> Settlement {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
        Settlement::Ack
    }
}

#[tokio::test]
async fn no_more_than_concurrency_handlers_run_at_once() {
    let fixture = Fixture::new("").await;
    let work = fixture.spec.stage(Stage::Inventory).work.clone();
    let publisher = publisher(&fixture).await;
    for i in 0..30 {
        publisher
            .to_queue(&work, b"{}".to_vec(), meta(&format!("c-{i}")))
            .await
            .unwrap();
    }
    let done = Arc::new(AtomicU32::new(0));
    let gauge = Arc::new(Gauge {
        now: AtomicU32::new(0),
        peak: AtomicU32::new(0),
        done: done.clone(),
    });
    let mut config = fixture.consumer_config(&work);
    config.concurrency = 3;
    config.prefetch = 20;
    let (token, run) = fixture.spawn_consumer(config, gauge.clone());
    eventually(Duration::from_secs(10), "all 30 handled", || {
        let done = done.clone();
        async move { done.load(Ordering::SeqCst) == 30 }
    })
    .await;
    stop(token, run).await;
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 3);
    assert_eq!(fixture.settled_depth(&work).await, 0);
}
