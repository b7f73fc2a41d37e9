//! The payment stage: charges a reserved order. Succeeded → paid →
//! shipping; declined, insufficient funds or fraud → rejected and the
//! reservation released; an unknown outcome (timeout, 5xx after sending,
//! `processing`) → asked by key, then `payment_pending` with re-checks on
//! the delay tiers — never advanced, refunded or released on a guess — and
//! escalated as `payment_unresolved` once the ambiguity window has passed.

use crate::Downstreams;
use crate::operation::{PAYMENT, conclude, operate};
use crate::route::{Route, route};
use orderflow_core::Stage;
use orderflow_downstream::api::Payment;
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

    fn lost_writes(&self, detail: String) -> Effect {
        crate::operation::lost_writes(detail)
    }

    async fn run(&self, order: &OrderRecord, job: &Job, env: &Env) -> Result<Effect, Error> {
        let (start, ctx, placed) = match route(&PAYMENT, &env.policy, order, job) {
            Route::Operate { start, ctx, placed } => (start, ctx, placed),
            Route::Conclude(decided) => {
                return Ok(conclude(&PAYMENT, env, &self.downstreams, order, job, &decided).await);
            }
            Route::Settle(effect) => return Ok(*effect),
            Route::Absorb | Route::Track => return Ok(Effect::default()),
        };
        let api = &self.downstreams.payment;
        let key = PAYMENT.key(order);
        let amount = placed.total();
        let decided = operate(
            env,
            &api.0,
            start,
            *ctx,
            (
                || {
                    api.charge(
                        &key,
                        &order.order_id,
                        amount,
                        &placed.currency,
                        &placed.payment_token,
                    )
                },
                || api.payment(&key),
            ),
            |p: &Payment| &p.payment_id,
        )
        .await?;
        Ok(conclude(&PAYMENT, env, &self.downstreams, order, job, &decided).await)
    }
}
