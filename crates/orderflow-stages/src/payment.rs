//! The payment stage.

use crate::Downstreams;
use orderflow_core::Stage;
use orderflow_runtime::{Effect, Env, Error, Job, StageLogic};
use orderflow_store::OrderRecord;
use std::sync::Arc;

pub struct PaymentStage {
    downstreams: Arc<Downstreams>,
}

impl PaymentStage {
    pub fn new(downstreams: Arc<Downstreams>) -> PaymentStage {
        PaymentStage { downstreams }
    }
}

impl StageLogic for PaymentStage {
    fn stage(&self) -> Stage {
        Stage::Payment
    }

    async fn run(&self, _order: &OrderRecord, _job: &Job, _env: &Env) -> Result<Effect, Error> {
        let _ = &self.downstreams;
        Ok(Effect::default())
    }
}
