use crate::common::{TestNs, order_id, redis_url};
use orderflow_core::Stage;
use orderflow_store::{Error, ErrorClass, Store};
use std::time::{Duration, Instant};

#[tokio::test]
async fn the_attempt_counter_survives_a_reconnect() {
    let t = TestNs::new().await;
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
    let err = Store::connect("redis://127.0.0.1:1", "test-unreachable")
        .await
        .expect_err("no server on port 1");
    assert_eq!(err.class(), ErrorClass::Unavailable, "{err:?}");
}

#[tokio::test]
async fn bad_namespaces_and_urls_are_invalid() {
    for ns in ["", "a{b}", "a:b"] {
        let err = Store::connect(&redis_url(), ns).await.expect_err("refused");
        assert!(matches!(err, Error::InvalidNamespace(_)), "{err:?}");
        assert_eq!(err.class(), ErrorClass::Invalid);
    }
    let err = Store::connect("http://nowhere", "ok")
        .await
        .expect_err("refused");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}
