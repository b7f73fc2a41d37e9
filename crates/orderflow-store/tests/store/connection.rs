use crate::common::{Backend, TestNs, order_id};
use orderflow_core::Stage;
use orderflow_store::{Error, ErrorClass, RedisTopology, Store};
use std::time::{Duration, Instant};

/// One node: the test kills the store's one connection. A cluster client
/// holds one per node; `failover.rs` kills a whole node instead.
#[tokio::test]
async fn the_attempt_counter_survives_a_reconnect() {
    let t = TestNs::new(Backend::Single).await;
    let id = order_id("attempts");
    assert_eq!(t.store.attempts(&id, Stage::Payment).await.unwrap(), 0);
    assert_eq!(t.store.incr_attempt(&id, Stage::Payment).await.unwrap(), 1);
    assert_eq!(t.store.incr_attempt(&id, Stage::Payment).await.unwrap(), 2);

    // Kill this store's connection from the server side.
    let client_id = t.store.client_id().await.unwrap();
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(client_id)
        .query(&mut t.raw())
        .unwrap();
    assert_eq!(killed, 1);

    // The manager reconnects; a command on the dead connection may fail as
    // Unavailable first, never as anything else.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match t.store.ping().await {
            Ok(()) => break,
            Err(err) => {
                assert_eq!(err.class(), ErrorClass::Unavailable, "{err:?}");
                assert!(Instant::now() < deadline, "no reconnect: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert_ne!(
        t.store.client_id().await.unwrap(),
        client_id,
        "a new connection"
    );
    assert_eq!(t.store.attempts(&id, Stage::Payment).await.unwrap(), 2);
    assert_eq!(t.store.incr_attempt(&id, Stage::Payment).await.unwrap(), 3);

    // A restarted worker (a new store) sees the same count.
    let restarted = t.connect().await;
    assert_eq!(restarted.attempts(&id, Stage::Payment).await.unwrap(), 3);
    assert_eq!(restarted.attempts(&id, Stage::Shipping).await.unwrap(), 0);
    restarted.reset_attempts(&id, Stage::Payment).await.unwrap();
    assert_eq!(t.store.attempts(&id, Stage::Payment).await.unwrap(), 0);
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable() {
    // Port 1 on loopback: nothing listens there.
    for url in ["redis://127.0.0.1:1", "redis+cluster://127.0.0.1:1"] {
        let err = Store::connect(url, "test-unreachable")
            .await
            .expect_err("no server on port 1");
        assert_eq!(err.class(), ErrorClass::Unavailable, "{url}: {err:?}");
    }
}

both!(bad_namespaces_and_urls_are_invalid);
async fn bad_namespaces_and_urls_are_invalid(backend: Backend) {
    for ns in ["", "a{b}", "a:b"] {
        let err = Store::connect(&backend.url(), ns)
            .await
            .expect_err("refused");
        assert!(matches!(err, Error::InvalidNamespace(_)), "{err:?}");
        assert_eq!(err.class(), ErrorClass::Invalid);
    }
    for url in [
        "http://nowhere",
        "redis+cluster://",
        "redis+cluster://a:1,,b:2",
    ] {
        let err = Store::connect(url, "ok").await.expect_err("refused");
        assert!(matches!(err, Error::InvalidArgument(_)), "{url}: {err:?}");
    }
}

both!(the_store_says_what_it_runs_on);
async fn the_store_says_what_it_runs_on(backend: Backend) {
    let t = TestNs::new(backend).await;
    assert_eq!(t.store.is_cluster(), backend == Backend::Cluster);
    match (backend, t.store.redis_topology().await.unwrap()) {
        (Backend::Single, RedisTopology::Single { .. }) => {}
        (Backend::Cluster, RedisTopology::Cluster(cluster)) => {
            assert!(cluster.is_ok(), "{cluster:?}");
            let serving: Vec<_> = cluster
                .masters
                .iter()
                .filter(|m| !m.slots.is_empty())
                .collect();
            // scripts/clusters.sh: 3 masters, each with 1 replica.
            assert_eq!(serving.len(), 3, "{cluster:?}");
            let slots: u32 = serving
                .iter()
                .flat_map(|m| &m.slots)
                .map(|(from, to)| u32::from(to - from) + 1)
                .sum();
            assert_eq!(slots, 16384);
            for master in serving {
                assert!(master.node.up, "{master:?}");
                assert_eq!(master.replicas.len(), 1, "{master:?}");
            }
        }
        (backend, topology) => panic!("{backend:?} reported as {topology:?}"),
    }
}
