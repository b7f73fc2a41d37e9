//! The payment stage: charges a reserved order. Succeeded → paid →
//! shipping; declined, insufficient funds or fraud → rejected and the
//! reservation released; an unknown outcome (timeout, 5xx after sending,
//! `processing`) → asked by key, then `payment_pending` with re-checks on
//! the delay tiers — never advanced, refunded or released on a guess — and
//! escalated as `payment_unresolved` once the ambiguity window has passed.

use crate::Downstreams;
use crate::deadline;
use crate::operation::{PAYMENT, check_of, conclude, decide_operation, placed};
use orderflow_core::{OrderState, Stage};
use orderflow_downstream::Operation;
use orderflow_downstream::api::Payment;
use orderflow_runtime::{Check, Effect, Env, Error, Job, StageLogic};
use orderflow_store::OrderRecord;
use std::sync::Arc;

const OWNED: [OrderState; 2] = [OrderState::Reserved, OrderState::PaymentPending];

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
        if check_of(job) == Some(Check::Deadline) {
            return Ok(deadline::check(&PAYMENT, env, order, &OWNED));
        }
        if !PAYMENT.owns(order.state) {
            return Ok(Effect::default());
        }
        let placed = match placed(order) {
            Ok(placed) => placed,
            Err(unreadable) => return Ok(*unreadable),
        };
        let api = &self.downstreams.payment;
        let key = PAYMENT.key(order, Operation::Charge);
        let amount = placed.total();
        let decided = decide_operation(
            &PAYMENT,
            env,
            &api.0,
            order,
            job,
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
