//! The harness itself: each control a fault test relies on does what it
//! says — kill -9 and restart, SIGTERM, dropping this namespace's broker
//! connections (and only those), restarting the private Redis on its
//! append-only file — and exception queues are read without consuming;
//! and the headless browser a console test drives fills, clicks, reads and
//! takes screenshots.

use orderflow_testkit::{Browser, Fleet, FleetOptions, Stage, WorkerKind};
use std::io::{Read, Write};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controls_act_on_this_fleet_only() {
    let fleet = Fleet::start(FleetOptions::new().private_redis()).await;
    let other = Fleet::start(FleetOptions::new()).await;

    // Exception queues are read without consuming.
    fleet.publish_malformed(b"harness: not json").await;
    let parked = fleet
        .wait_parked(Stage::Inventory, "malformed input", WITHIN, |p| {
            p.body == b"harness: not json"
        })
        .await;
    assert_eq!(parked.reason(), Some("malformed"));
    assert_eq!(fleet.exceptions(Stage::Inventory).await.len(), 1);
    assert_eq!(fleet.exceptions(Stage::Inventory).await.len(), 1);

    // Broker connections: this fleet's workers lose theirs, the other
    // fleet's and the harness's stay.
    let closed = fleet.close_broker_connections().await;
    assert!(
        closed >= 3,
        "expected the three stage workers' connections at least, closed {closed}"
    );
    let survivors =
        orderflow_broker::rabbitmqctl::list_connections().expect("rabbitmqctl lists connections");
    assert!(
        survivors.iter().any(|c| c.name.contains(other.namespace())),
        "another fleet's connections were closed too: {survivors:?}"
    );
    // The inventory worker reconnects and parks the next malformed message.
    fleet
        .publish_malformed(b"harness: after the connection loss")
        .await;
    fleet
        .wait_parked(
            Stage::Inventory,
            "a message after reconnecting",
            WITHIN,
            |p| p.body == b"harness: after the connection loss",
        )
        .await;

    // kill -9 and restart.
    fleet.kill_worker(WorkerKind::Payment, 0);
    let dead = fleet.dead_workers();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].starts_with("payment-worker#0"), "{dead:?}");
    fleet.restart_worker(WorkerKind::Payment, 0);
    fleet.wait_ready(WITHIN).await;
    assert!(fleet.dead_workers().is_empty());

    // SIGTERM drains and exits 0.
    let status = fleet
        .terminate_worker(WorkerKind::Inventory, 0, WITHIN)
        .expect("the worker exits after SIGTERM");
    assert!(status.success(), "a drained worker exits cleanly: {status}");
    fleet.start_worker(WorkerKind::Inventory, 0);
    fleet.wait_ready(WITHIN).await;

    // The private Redis comes back with what it had.
    let before = fleet
        .store()
        .server_time_ms()
        .await
        .expect("the private Redis answers");
    fleet.restart_redis().await;
    assert!(fleet.store().server_time_ms().await.unwrap() >= before);
    fleet.wait_ready(WITHIN).await;

    let ledger = fleet.ledger().await;
    assert!(ledger.payments.is_empty() && ledger.reservations.is_empty());
    fleet.assert_invariants().await;
    other.assert_invariants().await;
}

/// A page whose button writes the field's value into the page.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>orderflow-e2e browser harness</title></head>
<body>
  <label>Order id <input id="order" name="order"></label>
  <button id="show" onclick="document.getElementById('shown').textContent =
    'Order ' + document.getElementById('order').value">Show</button>
  <p id="shown"></p>
</body></html>"#;

/// Serves `html` to every request on a free local port (HTTP/1.0, a
/// thread per connection); returns its URL.
fn serve(html: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut request = Vec::new();
                let mut buf = [0; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(
                    stream,
                    "HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                    html.len()
                );
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_fills_clicks_reads_and_takes_screenshots() {
    let url = serve(PAGE);
    let browser = Browser::start().await;
    browser.open(&url).await;
    assert_eq!(
        browser.title().await.unwrap(),
        "orderflow-e2e browser harness"
    );

    browser.fill("#order", "ord-42").await;
    browser.click("button#show").await;
    assert_eq!(
        browser.wait_for_text("#shown", "ord-42").await,
        "Order ord-42"
    );
    assert_eq!(browser.text("#shown").await, "Order ord-42");

    let path = browser.screenshot("harness-browser").await;
    let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    assert!(path.ends_with("console-screenshots/harness-browser.png"));

    browser.close().await;
}
