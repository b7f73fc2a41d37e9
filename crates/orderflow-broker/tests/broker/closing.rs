//! Closing a connection whose broker stops answering returns anyway: the
//! connection runs through a relay on loopback that, once told, swallows
//! what the client sends, so the broker never sees the `close` and never
//! answers it.

use crate::common::{amqp_url, broker};
use orderflow_broker::{CLOSE_WITHIN, close, connect};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Relays one client to RabbitMQ at `upstream`; from the moment `mute` is
/// set, the client's bytes go nowhere.
async fn relay(upstream: String, mute: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let broker = TcpStream::connect(upstream).await.unwrap();
        let (mut client_read, mut client_write) = client.into_split();
        let (mut broker_read, mut broker_write) = broker.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut broker_read, &mut client_write).await;
        });
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(n) = client_read.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            if !mute.load(Ordering::SeqCst) && broker_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
    });
    port
}

#[tokio::test]
async fn closing_a_connection_the_broker_no_longer_answers_returns() {
    drop(broker().await); // reachable, or the test says how to start it
    let uri: lapin::uri::AMQPUri = amqp_url().parse().expect("the test broker's URL");
    let upstream = format!("{}:{}", uri.authority.host, uri.authority.port);
    let mute = Arc::new(AtomicBool::new(false));
    let port = relay(upstream, mute.clone()).await;
    let connection = connect(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f"))
        .await
        .expect("connected through the relay");
    assert!(connection.status().connected());

    mute.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let closed = tokio::time::timeout(CLOSE_WITHIN * 5, close(&connection, "test")).await;
    assert!(
        closed.is_ok(),
        "close did not return within {:?} of a broker that no longer answers",
        CLOSE_WITHIN * 5
    );
    assert!(
        started.elapsed() >= CLOSE_WITHIN - Duration::from_millis(100),
        "the broker cannot have answered, so close waited its bound: {:?}",
        started.elapsed()
    );
}
