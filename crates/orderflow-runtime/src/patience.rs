//! While Redis cannot take the work — unreachable, or answering that it
//! cannot write now (out of memory under `maxmemory`, a read-only replica,
//! a busy script, loading, a cluster or master down: the store's
//! [`ErrorClass::Unavailable`]) — a worker holds the delivery it has and
//! writes nothing it could not record: it waits with backoff, then carries
//! on. The delivery stays unacknowledged meanwhile, and is never handed back
//! to the queue for it, so the broker's delivery limit counts nothing. With
//! every handler waiting the consumer takes no new deliveries beyond its
//! prefetch, and the process reports itself unready ([`waiting_on_redis`]).

use backon::{BackoffBuilder, ExponentialBuilder};
use orderflow_store::{Error, ErrorClass};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tracing::{info, warn};

/// Deliveries of this process waiting on Redis right now.
static WAITING: AtomicUsize = AtomicUsize::new(0);
/// What Redis said last to a waiting delivery.
static LAST_ERROR: Mutex<String> = Mutex::new(String::new());

/// How many deliveries of this process wait on Redis, and what Redis last
/// said; `None` when none waits. Readiness reports it.
pub fn waiting_on_redis() -> Option<(usize, String)> {
    match WAITING.load(Ordering::SeqCst) {
        0 => None,
        waiting => Some((
            waiting,
            LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        )),
    }
}

/// One delivery's wait, counted while it lasts.
struct Waiting {
    what: &'static str,
}

impl Waiting {
    fn start(what: &'static str, err: &Error) -> Waiting {
        warn!(what, error = %err, "Redis cannot take the work now: holding the delivery until it can");
        WAITING.fetch_add(1, Ordering::SeqCst);
        metrics::gauge!("orderflow_waiting_on_redis").increment(1.0);
        metrics::counter!("orderflow_redis_waits_total", "what" => what).increment(1);
        Waiting::saw(err);
        Waiting { what }
    }

    fn saw(err: &Error) {
        *LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = err.to_string();
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("orderflow_waiting_on_redis").decrement(1.0);
        info!(what = self.what, "Redis takes the work again");
    }
}

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Runs `op` until it succeeds or fails for a reason waiting cannot cure.
pub(crate) async fn patiently<T, F, Fut>(what: &'static str, mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut delays = backoff();
    let mut waiting = None;
    loop {
        match op().await {
            Err(err) if err.class() == ErrorClass::Unavailable => {
                match &waiting {
                    None => waiting = Some(Waiting::start(what, &err)),
                    Some(_) => Waiting::saw(&err),
                }
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(2))).await;
            }
            result => return result,
        }
    }
}
