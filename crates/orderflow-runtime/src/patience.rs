//! While Redis is unreachable a worker holds the delivery it has and writes
//! nothing it could not record: it waits for Redis, then carries on. The
//! delivery stays unacknowledged meanwhile, and with every handler waiting
//! the consumer takes no new deliveries beyond its prefetch.

use backon::{BackoffBuilder, ExponentialBuilder};
use orderflow_store::{Error, ErrorClass};
use std::future::Future;
use std::time::Duration;
use tracing::{info, warn};

pub(crate) async fn patiently<T, F, Fut>(what: &'static str, mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
        .build();
    let mut waiting = false;
    loop {
        match op().await {
            Err(err) if err.class() == ErrorClass::Unavailable => {
                if !waiting {
                    warn!(what, error = %err, "Redis unavailable: holding the delivery until it is back");
                    waiting = true;
                }
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(2))).await;
            }
            result => {
                if waiting {
                    info!(what, "Redis is back");
                }
                return result;
            }
        }
    }
}
