//! The shipping stage: books the shipment of a paid order. Accepted →
//! `shipment_accepted`, the reservation committed, fulfilment tracked (see
//! `fulfilment`); refused (destination, address, policy) → `blocked` for a
//! business decision, never rolling back payment or inventory; a timeout
//! before acknowledgement → asked by key: found → proceed, not found →
//! re-sent with the same key.

use crate::Downstreams;
use crate::fulfilment;
use crate::operation::{SHIPPING, commit_reservation, conclude, operate};
use crate::route::{Route, route};
use orderflow_core::Stage;
use orderflow_downstream::api::Shipment;
use orderflow_runtime::{Effect, Env, Error, Job, StageLogic};
use orderflow_store::{FieldUpdate, OrderRecord};
use std::sync::Arc;
use tracing::warn;

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

    fn lost_writes(&self, detail: String) -> Effect {
        crate::operation::lost_writes(detail)
    }

    async fn run(&self, order: &OrderRecord, job: &Job, env: &Env) -> Result<Effect, Error> {
        let (start, ctx, placed) = match route(&SHIPPING, &env.policy, order, job) {
            Route::Operate { start, ctx, placed } => (start, ctx, placed),
            Route::Track => return fulfilment::track(&self.downstreams, env, order, job).await,
            Route::Conclude(decided) => {
                return Ok(conclude(&SHIPPING, env, &self.downstreams, order, job, &decided).await);
            }
            Route::Settle(effect) => return Ok(*effect),
            Route::Absorb => return Ok(Effect::default()),
        };
        let api = &self.downstreams.shipping;
        let key = SHIPPING.key(order);
        let decided = operate(
            env,
            &api.0,
            start,
            *ctx,
            (
                || {
                    api.create(
                        &key,
                        &order.order_id,
                        &placed.shipping_address,
                        &placed.items,
                    )
                },
                || api.shipment(&key),
            ),
            |s: &Shipment| &s.shipment_id,
        )
        .await?;
        // Accepted: the stock is sold, whether the order proceeds or —
        // cancelled meanwhile — is blocked for a person. A failed commit
        // is tried again (same key) before the order is marked delivered,
        // so it only delays delivery; a confirmed one is recorded and not
        // repeated.
        let committed = decided.ctx.outcome.is_confirmed_success()
            && match commit_reservation(&self.downstreams, env, order).await {
                Ok(()) => true,
                Err(detail) => {
                    warn!(order_id = %order.order_id, %detail, "reservation not committed yet; the reconciler commits it before delivery");
                    false
                }
            };
        let mut effect = conclude(&SHIPPING, env, &self.downstreams, order, job, &decided).await;
        if committed && let Some(transition) = effect.transition.as_mut() {
            transition.fields.push(FieldUpdate::ReservationCommitted);
        }
        Ok(effect)
    }
}
