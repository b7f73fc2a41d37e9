//! The inventory stage.

use crate::Downstreams;
use orderflow_core::Stage;
use orderflow_runtime::{Effect, Env, Error, Job, StageLogic};
use orderflow_store::OrderRecord;
use std::sync::Arc;

pub struct InventoryStage {
    downstreams: Arc<Downstreams>,
}

impl InventoryStage {
    pub fn new(downstreams: Arc<Downstreams>) -> InventoryStage {
        InventoryStage { downstreams }
    }
}

impl StageLogic for InventoryStage {
    fn stage(&self) -> Stage {
        Stage::Inventory
    }

    async fn run(&self, _order: &OrderRecord, _job: &Job, _env: &Env) -> Result<Effect, Error> {
        let _ = &self.downstreams;
        Ok(Effect::default())
    }
}
