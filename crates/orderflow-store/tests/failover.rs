//! The store through a Redis Cluster failover: the master owning an order's
//! slot is killed (`kill -9`), its replica is promoted, and the writes that
//! were held meanwhile land; then the node comes back as a replica, so the
//! cluster is whole again for the tests after this one.
//!
//! Needs the cluster of `scripts/clusters.sh up` (127.0.0.1:7001–7006, or
//! `ORDERFLOW_TEST_REDIS_CLUSTER_URL`). Its own test binary, so no other
//! store test runs while a master is down.

use orderflow_core::Policy;
use orderflow_core::message::OrderId;
use orderflow_store::{ErrorClass, Note, RedisTopology, Store};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn clusters_sh(args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/clusters.sh");
    let out = Command::new(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "clusters.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn info(port: u16, section: &str) -> String {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection())
        .and_then(|mut c| redis::cmd("INFO").arg(section).query(&mut c))
        .unwrap_or_default()
}

/// Every node answers, says the cluster is ok, and each replica is in sync
/// with its master: a failover can happen, and later tests find the cluster
/// as `scripts/clusters.sh up` left it.
fn whole() -> bool {
    let mut masters = 0;
    for port in 7001..=7006 {
        let cluster = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
            .unwrap_or_default();
        let replication = info(port, "replication");
        let nodes = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("CLUSTER").arg("NODES").query::<String>(&mut c))
            .unwrap_or_default();
        // Every node's view, too: 3 masters, none flagged failing, or a
        // topology read just after sees the node that came back as down.
        let masters_seen = nodes
            .lines()
            .filter(|line| {
                line.split_whitespace()
                    .nth(2)
                    .is_some_and(|f| f.contains("master"))
            })
            .count();
        if !cluster.contains("cluster_state:ok") || masters_seen != 3 || nodes.contains("fail") {
            return false;
        }
        if replication.contains("role:master") {
            masters += 1;
        } else if !replication.contains("master_link_status:up") {
            return false;
        }
    }
    masters == 3
}

fn wait_until_whole(within: Duration) {
    let deadline = Instant::now() + within;
    while !whole() {
        assert!(
            Instant::now() < deadline,
            "the Redis Cluster is not whole (3 masters, 3 synced replicas) after {within:?}; \
             see `scripts/clusters.sh status`, or run `scripts/clusters.sh up`"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the killed node again even when the test fails, so the shared
/// cluster is never left short of a node.
struct Restart(u16);

impl Drop for Restart {
    fn drop(&mut self) {
        let port = self.0.to_string();
        clusters_sh(&["redis", "start", &port]);
        wait_until_whole(Duration::from_secs(60));
    }
}

async fn master_port_of(store: &Store, slot: u16) -> u16 {
    let RedisTopology::Cluster(cluster) = store.redis_topology().await.unwrap() else {
        panic!("not a cluster");
    };
    let master = cluster
        .master_of(slot)
        .unwrap_or_else(|| panic!("no master serves slot {slot}: {cluster:?}"));
    master
        .node
        .address
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap()
}

fn note(n: u32) -> Note {
    Note {
        event: "test.failover_write".into(),
        reason: Some(format!("write {n}")),
        actor: "test-worker".into(),
        correlation_id: "corr-1".into(),
        policy_id: Policy::default_policy().id(),
        rule: None,
    }
}

fn cluster_url() -> String {
    std::env::var("ORDERFLOW_TEST_REDIS_CLUSTER_URL")
        .unwrap_or_else(|_| "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_ride_out_the_failover_of_their_master() {
    let ns = format!("test-{}", uuid::Uuid::new_v4());
    let store = Store::connect(&cluster_url(), &ns)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach the Redis Cluster at {}: {e}\nstart it with:\n    scripts/clusters.sh up",
                cluster_url()
            )
        });
    wait_until_whole(Duration::from_secs(30));
    let id = OrderId::parse("failover").unwrap();
    let policy_id = Policy::default_policy().id();
    store
        .create_order(
            &id,
            &json!({ "order_id": "failover" }),
            "corr-1",
            &policy_id,
            "test",
        )
        .await
        .unwrap();
    let slot: u16 = redis::Client::open("redis://127.0.0.1:7001")
        .and_then(|c| c.get_connection())
        .and_then(|mut c| {
            redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(format!("{ns}:order:{{failover}}:state"))
                .query(&mut c)
        })
        .unwrap();
    let killed = master_port_of(&store, slot).await;

    let mut written = 0;
    let mut pause = Duration::ZERO;
    let mut last_ok = Instant::now();
    let mut restart = None;
    let mut after_kill = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    // Write on and on: kill the master after a few writes, then go on until
    // enough writes landed on the promoted replica.
    while after_kill < 20 {
        assert!(
            Instant::now() < deadline,
            "writes did not resume after the failover"
        );
        if written == 5 && restart.is_none() {
            clusters_sh(&["redis", "kill9", &killed.to_string()]);
            restart = Some(Restart(killed));
            last_ok = Instant::now();
        }
        match store.note(&id, &note(written)).await {
            Ok(_) => {
                pause = pause.max(last_ok.elapsed());
                last_ok = Instant::now();
                written += 1;
                if restart.is_some() {
                    after_kill += 1;
                }
            }
            // The client's patience ran out: wait, as a worker does.
            Err(err) => {
                assert_eq!(err.class(), ErrorClass::Unavailable, "{err:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let promoted = master_port_of(&store, slot).await;
    assert_ne!(promoted, killed, "a replica took over slot {slot}");
    println!(
        "killed master 127.0.0.1:{killed} (slot {slot}); 127.0.0.1:{promoted} promoted; \
         writes paused for {} ms",
        pause.as_millis()
    );
    // The order's writes of after the kill are all on the new master.
    let audit = store.order_audit(&id).await.unwrap();
    let last = format!("write {}", written - 1);
    assert_eq!(
        audit.last().and_then(|e| e.reason.as_deref()),
        Some(last.as_str())
    );
    // The node comes back as a replica of the promoted one.
    drop(restart);
    assert!(
        info(killed, "replication").contains("role:slave"),
        "127.0.0.1:{killed} rejoined as a replica"
    );
    store.purge_namespace().await.unwrap();
}
