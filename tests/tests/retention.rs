//! The retention soak (docs/performance.md, "Redis stays bounded"): orders
//! at a steady rate through the whole fleet with finished orders kept
//! 15 s in Redis (`retention-soak` policy), a run many times longer than
//! that. It shows
//!
//! - the namespace's Redis footprint levelling off while orders keep
//!   coming, instead of growing with every order;
//! - every order archived to `{ns}.archive` exactly once, finished, with
//!   its whole audit trail;
//! - no key an unfinished order needs removed: no order lost, escalated or
//!   parked on the way.
//!
//! `ORDERFLOW_SOAK_ORDERS` (default 1,200) and `ORDERFLOW_SOAK_RATE`
//! (orders/s, default 15) size it; the default fits the CI budget on two
//! shared cores (about 2 minutes: 80 s of orders, five retention windows).
//! The rate is what a debug-built fleet on two shared cores keeps up with:
//! past it the reconciler's fulfilment polls of the growing backlog of
//! accepted shipments swamp the shipping stage (docs/performance.md).

use orderflow_broker::stream::{self, Offset};
use orderflow_store::ArchivedOrder;
use orderflow_testkit::fixtures::RETENTION_SOAK;
use orderflow_testkit::{Fleet, FleetOptions, Order, OrderState, Stage};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// A finished order's time in Redis, as the soak policy says.
const RETENTION: Duration = Duration::from_secs(15);
/// How often the footprint is measured.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

/// One measurement of the namespace.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    placed: usize,
    archived: usize,
    keys: u64,
    bytes: u64,
}

impl Sample {
    /// Orders placed and not yet archived: what Redis still holds.
    fn live(&self) -> usize {
        self.placed - self.archived.min(self.placed)
    }
}

/// Reads the archive on from where the last read stopped.
struct ArchiveReader {
    records: Vec<ArchivedOrder>,
}

impl ArchiveReader {
    async fn read_on(&mut self, fleet: &Fleet) {
        let name = fleet.spec().archive().name.clone();
        let from = Offset::Exact(self.records.len() as u64);
        let records = &mut self.records;
        let conn = fleet.broker().await;
        stream::read(&conn, &name, from, Duration::from_millis(300), |m| {
            records.push(serde_json::from_slice(&m.body).expect("an archived order"));
            ControlFlow::Continue(())
        })
        .await
        .unwrap_or_else(|e| panic!("reading {name}: {}", orderflow_broker::chain(&e)));
    }
}

async fn sample(fleet: &Fleet, started: Instant, placed: usize, archive: &ArchiveReader) -> Sample {
    let footprint = fleet
        .store()
        .footprint()
        .await
        .expect("the namespace's footprint");
    Sample {
        at: started.elapsed(),
        placed,
        archived: archive.records.len(),
        keys: footprint.keys,
        bytes: footprint.bytes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_levels_off_and_every_order_is_archived_once() {
    let orders = setting("ORDERFLOW_SOAK_ORDERS", 1_200);
    let rate = setting("ORDERFLOW_SOAK_RATE", 15).max(1);
    let fleet = Fleet::start(
        FleetOptions::new()
            .policy_fixture(RETENTION_SOAK)
            .profile("[shipping]\nfulfilment_step_ms = 100\n"),
    )
    .await;
    assert_eq!(fleet.policy().retention.finished_for, RETENTION);
    let started = Instant::now();
    let mut archive = ArchiveReader {
        records: Vec::new(),
    };
    let mut samples = vec![sample(&fleet, started, 0, &archive).await];
    let mut next_sample = started + SAMPLE_EVERY;

    // A steady rate: one tick a tenth of a second, each placing its share.
    let per_tick = rate.div_ceil(10);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut placed = 0;
    while placed < orders {
        tick.tick().await;
        for _ in 0..per_tick.min(orders - placed) {
            // One in ten declined: rejected orders are finished too.
            let order = Order::new(&format!("soak-{placed:06}"));
            let order = if placed % 10 == 9 {
                order.token("tok_declined")
            } else {
                order
            };
            fleet.place(&order).await;
            placed += 1;
        }
        if Instant::now() >= next_sample {
            archive.read_on(&fleet).await;
            samples.push(sample(&fleet, started, placed, &archive).await);
            next_sample += SAMPLE_EVERY;
        }
    }
    let published = started.elapsed();

    // Every order finishes, waits out its retention and is archived.
    let deadline = Instant::now() + RETENTION * 4 + Duration::from_secs(60);
    while archive.records.len() < orders {
        assert!(
            Instant::now() < deadline,
            "{} of {orders} orders archived",
            archive.records.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        archive.read_on(&fleet).await;
    }
    let end = sample(&fleet, started, placed, &archive).await;
    samples.push(end);

    for s in &samples {
        eprintln!(
            "t={:>5.1}s placed={:>6} archived={:>6} live={:>5} keys={:>7} bytes={:>10}{}",
            s.at.as_secs_f64(),
            s.placed,
            s.archived,
            s.live(),
            s.keys,
            s.bytes,
            if s.live() > 0 {
                format!(" bytes/live order={}", s.bytes / s.live() as u64)
            } else {
                String::new()
            }
        );
    }

    // Each order once, finished, with its whole record and trail.
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &archive.records {
        *copies.entry(record.order_id.as_str()).or_default() += 1;
        let order = record.order().expect("a readable archived record");
        assert!(
            matches!(order.state, OrderState::Delivered | OrderState::Rejected),
            "{} archived as {}",
            record.order_id,
            order.state
        );
        let audit = record.audit_entries().expect("a readable archived trail");
        let versions: std::collections::BTreeSet<u64> = audit.iter().map(|e| e.version).collect();
        assert_eq!(
            versions,
            (1..=order.version).collect(),
            "{}: every version of the order is in its archived trail",
            record.order_id
        );
        assert!(
            audit.iter().all(|e| e.to != OrderState::Escalated),
            "{}: no key it needed went missing on the way",
            record.order_id
        );
    }
    assert_eq!(copies.len(), orders, "every order archived");
    assert!(
        copies.values().all(|n| *n == 1),
        "archived twice: {:?}",
        copies
            .iter()
            .filter(|(_, n)| **n > 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    for stage in Stage::ALL {
        assert!(
            fleet.exceptions(stage).await.is_empty(),
            "nothing parked in {stage}"
        );
    }

    // Levels off: once the first orders have left, the footprint while
    // orders keep coming stays where it got to in the first stretch,
    // rather than growing with every order placed.
    let steady: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= RETENTION * 2 && s.at <= published)
        .collect();
    assert!(
        steady.len() >= 4,
        "a run long enough to pass the retention several times (published in {published:?})"
    );
    let half = steady.len() / 2;
    let early = steady[..half].iter().map(|s| s.keys).max().unwrap();
    let late = steady[half..].iter().map(|s| s.keys).max().unwrap();
    assert!(
        late <= early + early / 4,
        "keys kept growing: {early} early in the steady stretch, {late} late"
    );
    // What Redis holds follows the orders still in it (placed in the last
    // retention window or still moving), not every order placed.
    let last = steady.last().unwrap();
    let most_live = steady.iter().map(|s| s.live()).max().unwrap();
    assert!(
        most_live * 2 < last.placed,
        "{most_live} orders still in Redis of {} placed: they do not leave",
        last.placed
    );
    // And once every order has left, little more than the fleet-wide keys.
    assert!(
        end.keys < 100,
        "{} keys left after every order was archived",
        end.keys
    );
}
