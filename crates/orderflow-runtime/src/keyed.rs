//! At most one delivery per order at a time inside a process. The store's
//! lease does this across processes; this lock keeps a process from racing
//! itself for its own lease (and from wasting a delivery on a deferral).

use orderflow_core::message::OrderId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

#[derive(Debug, Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<OrderId, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while a delivery for the order runs.
pub struct KeyGuard<'a> {
    owner: &'a KeyedLocks,
    order_id: OrderId,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    pub async fn lock(&self, order_id: &OrderId) -> KeyGuard<'_> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(order_id.clone()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        KeyGuard {
            owner: self,
            order_id: order_id.clone(),
            guard: Some(guard),
        }
    }

    /// Orders with a delivery running or waiting.
    pub fn len(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.owner.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the order once nobody holds or waits for its lock.
        if locks
            .get(&self.order_id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.order_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn one_order_runs_one_at_a_time_and_is_forgotten_after() {
        let locks = Arc::new(KeyedLocks::default());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let id = OrderId::parse("o-1").unwrap();
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let (locks, running, most, id) =
                (locks.clone(), running.clone(), most.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let _guard = locks.lock(&id).await;
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert!(locks.is_empty());
    }

    #[tokio::test]
    async fn different_orders_do_not_wait_for_each_other() {
        let locks = KeyedLocks::default();
        let _a = locks.lock(&OrderId::parse("a").unwrap()).await;
        let b = tokio::time::timeout(
            Duration::from_millis(100),
            locks.lock(&OrderId::parse("b").unwrap()),
        )
        .await;
        assert!(b.is_ok());
    }
}
