//! The inventory stage: admits producers' messages, reserves stock, and
//! takes cancellations. Reserved → payment; insufficient stock → rejected
//! at once; an unknown outcome → asked by key, then re-sent with the same
//! key after the in-flight window; a cancelled order's reservation is
//! released once its outcome is known.

use crate::Downstreams;
use crate::ingress;
use crate::operation::{INVENTORY, conclude, operate};
use crate::route::{Route, route};
use orderflow_broker::Incoming;
use orderflow_core::Stage;
use orderflow_core::message::OrderId;
use orderflow_downstream::api::Reservation;
use orderflow_runtime::{Admission, Effect, Entry, Env, Error, Job, StageLogic};
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

    fn lost_writes(&self, detail: String) -> Effect {
        crate::operation::lost_writes(detail)
    }

    async fn admit(&self, delivery: &Incoming, _env: &Env) -> Result<Admission, Error> {
        Ok(ingress::admit(delivery))
    }

    async fn enter(
        &self,
        _order_id: &OrderId,
        delivery: &Incoming,
        env: &Env,
    ) -> Result<Entry, Error> {
        ingress::enter(delivery, env).await
    }

    async fn run(&self, order: &OrderRecord, job: &Job, env: &Env) -> Result<Effect, Error> {
        let (start, ctx, placed) = match route(&INVENTORY, &env.policy, order, job) {
            Route::Operate { start, ctx, placed } => (start, ctx, placed),
            Route::Conclude(decided) => {
                return Ok(
                    conclude(&INVENTORY, env, &self.downstreams, order, job, &decided).await,
                );
            }
            Route::Settle(effect) => return Ok(*effect),
            Route::Absorb | Route::Track => return Ok(Effect::default()),
        };
        let api = &self.downstreams.inventory;
        let key = INVENTORY.key(order);
        let decided = operate(
            env,
            &api.0,
            start,
            *ctx,
            (
                || api.reserve(&key, &order.order_id, &placed.items),
                || api.status_of(&key),
            ),
            |r: &Reservation| &r.reservation_id,
        )
        .await?;
        Ok(conclude(&INVENTORY, env, &self.downstreams, order, job, &decided).await)
    }
}
