use crate::common::{Backend, TestNs, create, mv, order_id};
use orderflow_core::OrderState::*;
use orderflow_store::{RedisTopology, Store, StoreOptions};
use std::time::Duration;

/// `WAIT` calls the node at `address` has served so far.
fn waits_served(address: &str) -> u64 {
    let stats: String = redis::Client::open(format!("redis://{address}"))
        .and_then(|c| c.get_connection())
        .and_then(|mut c| redis::cmd("INFO").arg("commandstats").query(&mut c))
        .expect("INFO commandstats");
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a call count"))
}

both!(state_writes_wait_for_replicas_when_the_policy_asks);
async fn state_writes_wait_for_replicas_when_the_policy_asks(backend: Backend) {
    let t = TestNs::new(backend).await;
    let store = Store::connect_with(
        &backend.url(),
        StoreOptions {
            namespace: t.ns.clone(),
            replica_acks: 1,
            replica_ack_timeout: Duration::from_millis(200),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let id = order_id("durable");
    let state_key = t.key("order:{durable}:state");
    // The node the order's writes go to, and its replica if it has one.
    let (master, replica) = match store.redis_topology().await.unwrap() {
        RedisTopology::Single { .. } => (
            backend.url().trim_start_matches("redis://").to_owned(),
            None,
        ),
        RedisTopology::Cluster(cluster) => {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&state_key)
                .query(&mut t.raw())
                .unwrap();
            let master = cluster.master_of(slot).expect("a master for the slot");
            (
                master.node.address.clone(),
                master.replicas.first().map(|r| r.address.clone()),
            )
        }
    };
    let before = waits_served(&master);
    create(&store, &id).await;
    store
        .transition(&id, &mv(1, Received, Reserved))
        .await
        .unwrap();
    store.transition(&id, &mv(2, Reserved, Paid)).await.unwrap();
    // Other clients may WAIT on a shared Redis too: at least ours counted.
    assert!(
        waits_served(&master) - before >= 3,
        "each of the 3 state writes waited for replicas"
    );
    // On the cluster each master has a replica, and the write is on it by
    // the time the store returns.
    if let Some(replica) = replica {
        let mut conn = redis::Client::open(format!("redis://{replica}"))
            .and_then(|c| c.get_connection())
            .unwrap();
        redis::cmd("READONLY").query::<()>(&mut conn).unwrap();
        let version: String = redis::cmd("HGET")
            .arg(&state_key)
            .arg("version")
            .query(&mut conn)
            .unwrap();
        assert_eq!(version, "3");
    }
}
