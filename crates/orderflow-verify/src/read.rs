//! Reading a [`Snapshot`] of a fleet's namespace: the one builder the
//! end-to-end tests and `orderflow-fleet` share, so both check I1–I9
//! against the same reading.

use crate::{AuditStep, Expectations, OrderView, Parked, Snapshot};
use downstream_sim::Ledger;
use orderflow_broker::{Connection, Names, admin};
use orderflow_core::Stage;
use orderflow_core::message::OrderId;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long a failing store read is retried: a Redis restarted by the run
/// (chaos, a store-loss test) answers again well within it.
const STORE_PATIENCE: Duration = Duration::from_secs(10);

/// A pause between two tries of a store read.
const STORE_RETRY: Duration = Duration::from_millis(100);

/// Exception-queue messages read at the most, per queue.
const PEEK_AT_MOST: usize = 10_000;

/// Where a fleet lives: its store, and a broker connection to peek at its
/// exception queues.
pub struct Namespace<'a> {
    pub store: &'a orderflow_store::Store,
    pub broker: &'a Connection,
    pub names: &'a Names,
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading order {order} from Redis: {source}")]
    Store {
        order: String,
        #[source]
        source: orderflow_store::Error,
    },
    #[error("peeking at {queue}: {}", orderflow_broker::chain(.source))]
    Queue {
        queue: String,
        #[source]
        source: orderflow_broker::Error,
    },
}

/// Everything the invariants are checked against, read now: every order
/// placed and every order the payment provider saw (a fleet inventing
/// orders is checked too), each with its audit; the inventory exception
/// queue; when the store lost writes, the orders parked in any exception
/// queue. `ledger` and `dead_workers` are the caller's (the simulator and
/// the processes are its own).
pub async fn read_snapshot(
    namespace: &Namespace<'_>,
    ledger: Ledger,
    expected: &Expectations,
    dead_workers: Vec<String>,
) -> Result<Snapshot, ReadError> {
    let mut ids: BTreeSet<&str> = expected.placed.iter().map(String::as_str).collect();
    ids.extend(ledger.payments.iter().map(|p| p.order_id.as_str()));
    let mut orders = BTreeMap::new();
    let mut audits = BTreeMap::new();
    for id in ids {
        // An id the contract refuses never became an order: its message is
        // judged with the malformed ones (I8).
        let Some(order_id) = OrderId::parse(id) else {
            continue;
        };
        let record = patiently(id, || namespace.store.get_order(&order_id)).await?;
        let audit = patiently(id, || namespace.store.order_audit(&order_id)).await?;
        orders.insert(id.to_owned(), record.as_ref().map(OrderView::from));
        audits.insert(id.to_owned(), audit.iter().map(AuditStep::from).collect());
    }
    let inventory_exceptions = parked(namespace, Stage::Inventory).await?;
    let parked_orders = if expected.store_lost_writes {
        parked_orders(namespace).await?
    } else {
        BTreeSet::new()
    };
    Ok(Snapshot {
        ledger,
        orders,
        audits,
        inventory_exceptions,
        parked_orders,
        dead_workers,
    })
}

/// Orders with a message in any stage's exception queue, waiting for a
/// person: what accounts for an order a store that lost writes forgot
/// ([`crate::forgotten_but_accounted`]).
pub async fn parked_orders(namespace: &Namespace<'_>) -> Result<BTreeSet<String>, ReadError> {
    let mut orders = BTreeSet::new();
    for stage in Stage::ALL {
        let messages = parked(namespace, stage).await?;
        orders.extend(messages.iter().filter_map(Parked::order_id));
    }
    Ok(orders)
}

/// A stage's exception queue, read without consuming it.
async fn parked(namespace: &Namespace<'_>, stage: Stage) -> Result<Vec<Parked>, ReadError> {
    let queue = namespace.names.exception_queue(stage);
    let messages = admin::peek(namespace.broker, &queue, PEEK_AT_MOST)
        .await
        .map_err(|source| ReadError::Queue {
            queue: queue.clone(),
            source,
        })?;
    Ok(messages
        .into_iter()
        .map(|message| Parked {
            queue: queue.clone(),
            redelivered: message.redelivered(),
            body: message.body().to_vec(),
            meta: message.meta().clone(),
        })
        .collect())
}

/// One store read, tried again while Redis does not answer.
async fn patiently<T, F, Fut>(order: &str, read: F) -> Result<T, ReadError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, orderflow_store::Error>>,
{
    let deadline = Instant::now() + STORE_PATIENCE;
    loop {
        match read().await {
            Ok(value) => return Ok(value),
            Err(source) if Instant::now() > deadline => {
                return Err(ReadError::Store {
                    order: order.to_owned(),
                    source,
                });
            }
            Err(_) => tokio::time::sleep(STORE_RETRY).await,
        }
    }
}
