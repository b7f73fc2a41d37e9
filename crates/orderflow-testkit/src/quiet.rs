//! "Nothing more will happen": every work and delay queue of the fleet's
//! namespace is empty with nothing unacknowledged. The positive signal a
//! test waits for before it counts what did *not* happen (a duplicate
//! absorbed, a retry that must not come): whatever the fleet was going to
//! do with the messages it had, it has done.

use crate::Fleet;
use orderflow_broker::rabbitmqctl;
use orderflow_core::Stage;
use std::time::{Duration, Instant};

impl Fleet {
    /// Waits until every work and delay queue of the namespace is empty
    /// and has no delivery unacknowledged, seen twice in a row (a message
    /// moving from one queue to the next is never missed: it is published
    /// with a confirm before the one that caused it is acked). Panics after
    /// `timeout` with the busy queues.
    pub async fn wait_quiet(&self, timeout: Duration) {
        let watched = self.work_and_delay_queues();
        let deadline = Instant::now() + timeout;
        let mut quiet_readings = 0;
        loop {
            let busy: Vec<String> = tokio::task::spawn_blocking(rabbitmqctl::queue_counts)
                .await
                .expect("rabbitmqctl runs")
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .filter(|(name, counts)| {
                    watched.contains(name) && (counts.ready, counts.unacked) != (0, 0)
                })
                .map(|(name, counts)| {
                    format!("{name}: {} ready, {} unacked", counts.ready, counts.unacked)
                })
                .collect();
            quiet_readings = if busy.is_empty() {
                quiet_readings + 1
            } else {
                0
            };
            if quiet_readings == 2 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the fleet is not quiet after {timeout:?}: {}",
                busy.join("; ")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn work_and_delay_queues(&self) -> Vec<String> {
        let mut names = Vec::new();
        for stage in Stage::ALL {
            let queues = self.spec.stage(stage);
            names.push(queues.work.clone());
            names.extend(queues.delays.iter().map(|d| d.queue.clone()));
        }
        names
    }
}
