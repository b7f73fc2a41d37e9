//! The shipping stage.

use crate::Downstreams;
use orderflow_core::Stage;
use orderflow_runtime::{Effect, Env, Error, Job, StageLogic};
use orderflow_store::OrderRecord;
use std::sync::Arc;

pub struct ShippingStage {
    downstreams: Arc<Downstreams>,
}

impl ShippingStage {
    pub fn new(downstreams: Arc<Downstreams>) -> ShippingStage {
        ShippingStage { downstreams }
    }
}

impl StageLogic for ShippingStage {
    fn stage(&self) -> Stage {
        Stage::Shipping
    }

    async fn run(&self, _order: &OrderRecord, _job: &Job, _env: &Env) -> Result<Effect, Error> {
        let _ = &self.downstreams;
        Ok(Effect::default())
    }
}
