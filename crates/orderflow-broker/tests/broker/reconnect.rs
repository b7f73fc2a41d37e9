use crate::common::{Fixture, amqp_url, eventually, stop};
use orderflow_broker::rabbitmqctl::{self, ClientConnection};
use orderflow_broker::{Handler, Incoming, Meta, Publisher, Settlement, admin};
use orderflow_core::Stage;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MESSAGES: u32 = 200;
/// Handlers stop at this many so the connections die with work in flight.
const PAUSE_AT: u32 = 60;

/// Forwards each message to the next stage, then acks; counts deliveries
/// per message id.
struct Forward {
    to: String,
    seen: Mutex<HashMap<String, u32>>,
    handled: AtomicU32,
    in_flight: AtomicU32,
    released: AtomicBool,
}

impl Handler for Forward {
    async fn handle(&self, delivery: Incoming, publisher: &Publisher) -> Settlement {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let id = delivery.meta().message_id.clone().unwrap_or_default();
        *self.seen.lock().unwrap().entry(id).or_default() += 1;
        if self.handled.fetch_add(1, Ordering::SeqCst) + 1 >= PAUSE_AT {
            while !self.released.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let (body, meta) = delivery.into_parts();
        let settlement = match publisher.to_queue(&self.to, body, meta).await {
            Ok(()) => Settlement::Ack,
            Err(_) => Settlement::Requeue,
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        settlement
    }
}

/// The broker's connections whose name contains `name`.
fn connections_named(name: &str) -> Vec<ClientConnection> {
    rabbitmqctl::list_connections()
        .unwrap_or_else(|e| panic!("this test needs `rabbitmqctl` (RabbitMQ's CLI): {e}"))
        .into_iter()
        .filter(|c| c.name.contains(name))
        .collect()
}

/// Closes every broker connection whose name contains `name`, the way an
/// operator or a broker restart would; returns their pids.
fn close_connections_named(name: &str) -> Vec<String> {
    let connections = connections_named(name);
    rabbitmqctl::close_connections(&connections, "test");
    connections.into_iter().map(|c| c.pid).collect()
}

#[tokio::test]
async fn nothing_is_lost_when_the_broker_drops_the_connections() {
    let fixture = Fixture::new("").await;
    let inventory = fixture.spec.stage(Stage::Inventory).work.clone();
    let payment = fixture.spec.stage(Stage::Payment).work.clone();
    let filler = Publisher::connect(&amqp_url(), &format!("{}.fill", fixture.namespace()))
        .await
        .unwrap();
    for i in 0..MESSAGES {
        let meta = Meta {
            message_id: Some(format!("m-{i:03}")),
            ..Meta::default()
        };
        filler
            .to_queue(&inventory, b"{}".to_vec(), meta)
            .await
            .unwrap();
    }
    filler.close().await;

    let handler = Arc::new(Forward {
        to: payment.clone(),
        seen: Mutex::new(HashMap::new()),
        handled: AtomicU32::new(0),
        in_flight: AtomicU32::new(0),
        released: AtomicBool::new(false),
    });
    let mut config = fixture.consumer_config(&inventory);
    let name = format!("{}.consumer", fixture.namespace());
    config.consumer_tag_prefix = name.clone();
    config.prefetch = 20;
    config.concurrency = 8;
    let (token, run) = fixture.spawn_consumer(config, handler.clone());

    eventually(Duration::from_secs(10), "handlers reach the pause", || {
        let handler = handler.clone();
        async move { handler.handled.load(Ordering::SeqCst) >= PAUSE_AT }
    })
    .await;
    let closed = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || close_connections_named(&name))
            .await
            .unwrap()
    };
    assert!(
        !closed.is_empty(),
        "found no connection of the consumer to close"
    );
    // rabbitmqctl returns once the close is ordered; once the broker lists
    // none of them, the paused handlers' acks surely fail.
    eventually(
        Duration::from_secs(10),
        "the broker closed the connections",
        || {
            let (name, closed) = (name.clone(), closed.clone());
            async move {
                tokio::task::spawn_blocking(move || connections_named(&name))
                    .await
                    .unwrap()
                    .iter()
                    .all(|c| !closed.contains(&c.pid))
            }
        },
    )
    .await;
    handler.released.store(true, Ordering::SeqCst);

    eventually(
        Duration::from_secs(30),
        "every message handled and acked",
        || {
            let handler = handler.clone();
            let fixture = &fixture;
            let inventory = &inventory;
            async move {
                handler.seen.lock().unwrap().len() == MESSAGES as usize
                    && handler.in_flight.load(Ordering::SeqCst) == 0
                    && fixture.depth(inventory).await == 0
            }
        },
    )
    .await;
    stop(token, run).await;

    assert_eq!(
        fixture.settled_depth(&inventory).await,
        0,
        "every input acked"
    );
    let seen = handler.seen.lock().unwrap().clone();
    let redelivered = seen.values().filter(|&&n| n > 1).count();
    assert!(
        redelivered >= 1,
        "the messages in flight when the connection died were delivered again"
    );
    // Every message reached the next stage at least once.
    let mut forwarded = BTreeSet::new();
    while let Some(fetched) = admin::get(&fixture.connection, &payment).await.unwrap() {
        forwarded.insert(fetched.message().meta().message_id.clone().unwrap());
        fetched.settle(Settlement::Ack).await.unwrap();
    }
    assert_eq!(forwarded.len(), MESSAGES as usize);
}
