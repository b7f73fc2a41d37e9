//! Attempt counters per order and stage. They live in Redis rather than in
//! a message header alone, so a worker crash, a redelivery or a republished
//! copy never starts the count again.

use crate::Store;
use crate::error::Error;
use orderflow_core::Stage;
use orderflow_core::message::OrderId;

impl Store {
    /// Counts one more attempt; returns the count including it.
    pub async fn incr_attempt(&self, order_id: &OrderId, stage: Stage) -> Result<u32, Error> {
        let count: u64 = redis::cmd("INCR")
            .arg(self.keys.attempts(order_id, stage))
            .query_async(&mut self.conn())
            .await?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// Attempts counted so far (0 if none).
    pub async fn attempts(&self, order_id: &OrderId, stage: Stage) -> Result<u32, Error> {
        let count: Option<u64> = redis::cmd("GET")
            .arg(self.keys.attempts(order_id, stage))
            .query_async(&mut self.conn())
            .await?;
        Ok(count.map_or(0, |count| u32::try_from(count).unwrap_or(u32::MAX)))
    }

    /// Starts the count again, e.g. after an operator's retry.
    pub async fn reset_attempts(&self, order_id: &OrderId, stage: Stage) -> Result<(), Error> {
        redis::cmd("DEL")
            .arg(self.keys.attempts(order_id, stage))
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }
}
