//! orderflow on the 3-node RabbitMQ cluster and the Redis Cluster of
//! `scripts/clusters.sh` (`scripts/clusters.sh up` first; scripts/test.sh
//! does it): the broker crate connecting over a list of nodes, queues with
//! three replicas, a queue leader killed with -9 under a consumer and
//! publishers, and the whole fleet riding out the payment queue's leader
//! and then the Redis master of an order in flight killed mid-run.
//!
//! Every test here takes its turn ([`clusters::exclusive`]) and brings a
//! node it killed back before it ends, even by a panic.

use orderflow_broker::{
    Consumer, ConsumerConfig, Handler, Incoming, Meta, Outgoing, Publisher, Settlement,
    TopologySpec, chain, topology,
};
use orderflow_testkit::clusters::{self, RABBIT_NODES, node_name, node_url, rabbit_urls};
use orderflow_testkit::orders::mixed;
use orderflow_testkit::{Fleet, FleetOptions, Order, OrderState, Stage, WorkerKind, tally};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The cluster's URL list starting at node `first`, the others after it
/// in order.
fn urls_from(first: u8) -> String {
    RABBIT_NODES
        .iter()
        .cycle()
        .skip_while(|&&n| n != first)
        .take(RABBIT_NODES.len())
        .map(|&n| node_url(n))
        .collect::<Vec<_>>()
        .join(",")
}

fn default_policy() -> orderflow_core::Policy {
    orderflow_core::policy::parse("", "default").expect("the default policy is valid")
}

/// A namespace's topology on the cluster, deleted on drop.
struct Declared {
    spec: TopologySpec,
}

impl Declared {
    async fn new() -> Declared {
        let ns = format!("t-cluster-{}", uuid::Uuid::new_v4().simple());
        let spec = TopologySpec::from_policy(&ns, &default_policy()).expect("a valid namespace");
        let connection = orderflow_broker::connect(&rabbit_urls())
            .await
            .unwrap_or_else(|e| panic!("the cluster: {}", chain(&e)));
        topology::declare(&connection, &spec)
            .await
            .unwrap_or_else(|e| panic!("declaring on the cluster: {}", chain(&e)));
        let _ = connection.close(200, "declared".into()).await;
        Declared { spec }
    }

    fn prefix(&self) -> String {
        format!("{}.", self.spec.names().namespace())
    }
}

impl Drop for Declared {
    fn drop(&mut self) {
        let spec = self.spec.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the clean-up");
            runtime.block_on(async {
                if let Ok(connection) = orderflow_broker::connect(&rabbit_urls()).await {
                    let _ = topology::delete(&connection, &spec).await;
                }
            });
        })
        .join();
    }
}

/// A Redis Cluster master killed by the test: started again (as a replica
/// of the node promoted in its place) on drop, test passing or not, and
/// waited for until the cluster is whole.
struct KilledRedis {
    port: u16,
    at: Instant,
}

impl KilledRedis {
    fn master(port: u16) -> KilledRedis {
        let at = clusters::redis_kill9(port);
        eprintln!("killed redis {port} (kill -9)");
        KilledRedis { port, at }
    }
}

impl Drop for KilledRedis {
    fn drop(&mut self) {
        let (port, started) = (self.port, Instant::now());
        let _ = std::thread::spawn(move || clusters::redis_start(port)).join();
        eprintln!(
            "redis {port} back as a replica, the cluster whole, in {:?}",
            started.elapsed()
        );
    }
}

/// How long after `since` the first of `markers` (placed after a kill) got
/// past payment: the fleet working again, not a delivery that was in
/// flight.
async fn time_to_resume(fleet: &Fleet, markers: &[Order], since: Instant) -> Duration {
    loop {
        for marker in markers {
            if let Some(record) = fleet.order(&marker.order_id).await
                && past_payment(record.state)
            {
                return since.elapsed();
            }
        }
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "no order placed after the kill got past payment within 120s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node killed by the test: started again on drop if the test did not.
struct Killed {
    node: u8,
    at: Instant,
    restarted: bool,
}

impl Killed {
    fn node(node: u8) -> Killed {
        let at = clusters::kill9(node);
        eprintln!("killed {} (kill -9)", node_name(node));
        Killed {
            node,
            at,
            restarted: false,
        }
    }

    async fn restart(mut self, prefix: &str) {
        let started = Instant::now();
        clusters::start(self.node, prefix).await;
        eprintln!(
            "{} back with every replica online in {:?}",
            node_name(self.node),
            started.elapsed()
        );
        self.restarted = true;
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if !self.restarted {
            let n = self.node.to_string();
            let _ =
                std::thread::spawn(move || clusters::clusters_sh(&["rabbit", "start", &n])).join();
        }
    }
}

#[tokio::test]
async fn every_queue_gets_three_replicas_on_the_three_nodes() {
    let _turn = clusters::exclusive().await;
    clusters::require_rabbit_cluster();
    let declared = Declared::new().await;
    let queues = clusters::replicas(&declared.prefix());
    assert_eq!(
        queues.len(),
        declared.spec.queue_names().len(),
        "{queues:?}"
    );
    for (queue, replicas) in &queues {
        let members: BTreeSet<&String> = replicas.members.iter().collect();
        assert_eq!(members.len(), 3, "{queue}: {replicas:?}");
    }
}

/// Keeps the message ids it is handed.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<BTreeSet<String>>>);

impl Received {
    fn ids(&self) -> BTreeSet<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Handler for Received {
    async fn handle(&self, delivery: Incoming, _: &Publisher) -> Settlement {
        if let Some(id) = &delivery.meta().message_id {
            self.0.lock().unwrap().insert(id.clone());
        }
        Settlement::Ack
    }
}

/// What one publisher saw: the ids the broker confirmed, when, and the
/// refusals on the way.
#[derive(Default)]
struct Published {
    confirmed: Vec<(String, Instant)>,
    nacked: usize,
    failed: usize,
}

/// Publishes `count` messages to `queue` one after another, each sent again
/// until the broker confirms it (the same id: the consumer dedupes).
async fn publish_until_confirmed(
    publisher: Publisher,
    queue: String,
    label: &'static str,
    count: usize,
    progress: Arc<Mutex<usize>>,
) -> Published {
    let mut published = Published::default();
    for i in 0..count {
        let id = format!("{label}-{i}");
        loop {
            let meta = Meta {
                message_id: Some(id.clone()),
                ..Meta::default()
            };
            let message = Outgoing::to_queue(&queue, id.clone().into_bytes(), meta);
            match publisher.publish(message).await {
                Ok(()) => break,
                Err(orderflow_broker::Error::Nacked { .. }) => published.nacked += 1,
                Err(e) if e.is_transient() => published.failed += 1,
                Err(e) => panic!("{label}: {}", chain(&e)),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        published.confirmed.push((id, Instant::now()));
        *progress.lock().unwrap() += 1;
        // Paced, so the kill lands mid-stream.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    published
}

/// The node leading a work queue is killed while one publisher is
/// connected to it, another to a surviving node, and the consumer to it
/// too: the consumer and the first publisher reconnect to the next node of
/// their list, the survivor's channel is reopened if the election nacks it,
/// publishing resumes, and every confirmed message is consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_work_queue_leader_loses_no_message_and_publishing_resumes() {
    let _turn = clusters::exclusive().await;
    clusters::require_rabbit_cluster();
    let declared = Declared::new().await;
    let queue = declared.spec.stage(Stage::Payment).work.clone();
    let leader = clusters::leader_node(&queue);
    let survivor = RABBIT_NODES.into_iter().find(|&n| n != leader).unwrap();

    let received = Received::default();
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(Consumer::run(
        ConsumerConfig {
            amqp_url: urls_from(leader),
            queue: queue.clone(),
            prefetch: 20,
            concurrency: 4,
            shutdown_grace: Duration::from_secs(5),
            consumer_tag_prefix: declared.spec.names().namespace().to_owned(),
        },
        declared.spec.clone(),
        received.clone(),
        shutdown.clone(),
    ));

    const EACH: usize = 600;
    let progress = Arc::new(Mutex::new(0usize));
    let on_leader = Publisher::connect(&urls_from(leader), "t-cluster.on-leader")
        .await
        .expect("a publisher on the leader's node");
    let on_survivor = Publisher::connect(&urls_from(survivor), "t-cluster.on-survivor")
        .await
        .expect("a publisher on another node");
    let publishers = [
        tokio::spawn(publish_until_confirmed(
            on_leader,
            queue.clone(),
            "on-leader",
            EACH,
            progress.clone(),
        )),
        tokio::spawn(publish_until_confirmed(
            on_survivor,
            queue.clone(),
            "on-survivor",
            EACH,
            progress.clone(),
        )),
    ];

    let deadline = Instant::now() + Duration::from_secs(60);
    while *progress.lock().unwrap() < EACH / 2 {
        assert!(Instant::now() < deadline, "publishing did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = Killed::node(leader);

    // A list whose first node is down: the next one answers.
    let connection = orderflow_broker::connect(&urls_from(leader))
        .await
        .unwrap_or_else(|e| panic!("a list with its first node down: {}", chain(&e)));
    assert!(connection.status().connected());
    let _ = connection.close(200, "checked".into()).await;

    let mut sent = BTreeSet::new();
    for (publisher, label) in publishers.into_iter().zip(["on-leader", "on-survivor"]) {
        let published = tokio::time::timeout(Duration::from_secs(120), publisher)
            .await
            .unwrap_or_else(|_| panic!("{label}: publishing did not resume within 120s"))
            .expect("the publisher task did not panic");
        let resumed = published
            .confirmed
            .iter()
            .find(|(_, at)| *at > killed.at)
            .map(|(_, at)| at.duration_since(killed.at));
        eprintln!(
            "{label}: publishing resumed {resumed:?} after the kill ({} nacks, {} other failures on the way)",
            published.nacked, published.failed
        );
        assert!(
            resumed.is_some(),
            "{label}: nothing confirmed after the kill"
        );
        sent.extend(published.confirmed.into_iter().map(|(id, _)| id));
    }
    let new_leader = clusters::replicas_of(&queue).leader;
    eprintln!("{queue}: leader {} → {new_leader}", node_name(leader));

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing: Vec<String> = sent.difference(&received.ids()).cloned().collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} confirmed messages never consumed, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("all {} confirmed messages consumed", sent.len());
    killed.restart(&declared.prefix()).await;
    shutdown.cancel();
    consumer
        .await
        .expect("the consumer task did not panic")
        .unwrap_or_else(|e| panic!("the consumer failed: {}", chain(&e)));
}

/// The fleet on the clusters: workers, `orderctl` and the harness on the
/// 3-node RabbitMQ cluster and the Redis Cluster.
fn on_clusters(options: FleetOptions) -> FleetOptions {
    options
        .amqp_url(&rabbit_urls())
        .redis_url(&clusters::redis_cluster_url())
        .profile_fixture("mixed-faults")
        .replicas(WorkerKind::Payment, 2)
        .replicas(WorkerKind::Shipping, 2)
}

/// `orderctl status --json` on the fleet.
fn operator_status(fleet: &Fleet) -> serde_json::Value {
    let output = fleet.orderctl(&["status", "--json", "--sample", "0"]);
    assert!(
        output.status.success(),
        "orderctl status failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("orderctl status --json prints JSON")
}

/// Paid, or further along.
fn past_payment(state: OrderState) -> bool {
    matches!(
        state,
        OrderState::Paid
            | OrderState::ShippingPending
            | OrderState::ShipmentAccepted
            | OrderState::Delivered
    )
}

/// The proof: 500+ orders under the mixed fault profile on the
/// 3-node RabbitMQ cluster and the Redis Cluster; mid-run the node leading
/// the payment queue is killed with -9 and later started again
/// (`orderctl status` shows the node down and the queue with 2 of its 3
/// replicas online), then the Redis master holding an order in flight is
/// killed with -9 (its replica is promoted) and started again. Every order
/// settles, I1–I9 hold against the simulator's ledger, and the time from
/// each kill until an order placed after it got past payment is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_loses_no_order_when_a_broker_node_and_a_redis_master_are_killed() {
    let _turn = clusters::exclusive().await;
    clusters::require_rabbit_cluster();
    let fleet = Fleet::start(on_clusters(FleetOptions::new())).await;
    let started = Instant::now();
    let orders = mixed("ord-cluster", 500);
    let (first, second) = orders.split_at(250);
    fleet.place_all(first).await;
    fleet
        .wait_ledger("payments under way", Duration::from_secs(60), |l| {
            l.calls_to(orderflow_testkit::Endpoint::PaymentCharge) >= 50
        })
        .await;

    let payment_queue = fleet.spec().stage(Stage::Payment).work.clone();
    let status = operator_status(&fleet);
    let nodes = status["broker"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        nodes.len() == 3 && nodes.iter().all(|n| n["up"] == true),
        "orderctl status shows the three nodes up: {}",
        status["broker"]
    );
    let leader = clusters::leader_node(&payment_queue);
    let killed = Killed::node(leader);
    // Orders placed after the kill: the first of them past payment is the
    // fleet working again, not a delivery that was in flight.
    let markers: Vec<Order> = (0..10)
        .map(|i| Order::new(&format!("ord-cluster-after-kill-{i}")))
        .collect();
    fleet.place_all(&markers).await;
    // The cluster takes a moment to mark the node down: wait for the status
    // to show it, within 30 s.
    let down = node_url(leader).replace(":guest@", ":***@");
    let shown_at = Instant::now();
    let payment = loop {
        let status = operator_status(&fleet);
        let node_down = status["broker"]["nodes"].as_array().is_some_and(|nodes| {
            nodes
                .iter()
                .any(|n| n["url"] == down.as_str() && n["up"] == false)
        });
        let payment = status["broker"]["queues"]
            .as_array()
            .and_then(|queues| queues.iter().find(|q| q["queue"] == payment_queue.as_str()))
            .cloned();
        match payment {
            Some(payment) if node_down && payment["online"].as_array().map(Vec::len) == Some(2) => {
                break payment;
            }
            _ => assert!(
                shown_at.elapsed() < Duration::from_secs(30),
                "orderctl status does not show {down} down and {payment_queue} with 2 of 3 replicas online within 30s: {}",
                status["broker"]
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        payment["members"].as_array().map(Vec::len),
        Some(3),
        "{payment}"
    );
    let resumed = time_to_resume(&fleet, &markers, killed.at).await;
    eprintln!(
        "RabbitMQ: killed {} (leader of {payment_queue}); the fleet resumed (an order placed after the kill got past payment) {resumed:?} after the kill",
        node_name(leader)
    );
    killed.restart(&format!("{}.", fleet.namespace())).await;

    // Redis half: kill -9 the master holding an order still in flight; its
    // replica is promoted and the fleet rides the failover out.
    fleet.place_all(second).await;
    let looking = Instant::now();
    let in_flight = loop {
        let mut found = None;
        for order in second {
            if let Some(record) = fleet.order(&order.order_id).await
                && !record.state.is_terminal()
                && !record.state.requires_reason()
            {
                found = Some(order.order_id.clone());
                break;
            }
        }
        if let Some(found) = found {
            break found;
        }
        assert!(
            looking.elapsed() < Duration::from_secs(30),
            "no order of the second half in flight within 30s of placing it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let master = clusters::redis_master_of(&format!(
        "{}:order:{{{in_flight}}}:state",
        fleet.namespace()
    ));
    let killed_redis = KilledRedis::master(master);
    let redis_markers: Vec<Order> = (0..10)
        .map(|i| Order::new(&format!("ord-cluster-after-redis-kill-{i}")))
        .collect();
    fleet.place_all(&redis_markers).await;
    let redis_resumed = time_to_resume(&fleet, &redis_markers, killed_redis.at).await;
    eprintln!(
        "Redis: killed master {master} (holding {in_flight}, in flight); the fleet resumed (an order placed after the kill got past payment) {redis_resumed:?} after the kill"
    );
    drop(killed_redis);

    let records = fleet.settle_and_check(Duration::from_secs(240)).await;
    eprintln!(
        "settled {} orders in {:?}: {}",
        records.len(),
        started.elapsed(),
        tally(&records)
    );
    assert!(records.len() >= 520, "{} orders", records.len());
    fleet.assert_good_orders_not_refused(&orders).await;
    fleet.assert_good_orders_not_refused(&markers).await;
    fleet.assert_good_orders_not_refused(&redis_markers).await;
    assert!(
        fleet.dead_workers().is_empty(),
        "no worker exits over a lost node: {:?}",
        fleet.dead_workers()
    );
}
