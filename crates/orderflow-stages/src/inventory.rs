//! The inventory stage: admits producers' messages, reserves stock, and
//! takes cancellations. Reserved → payment; insufficient stock → rejected
//! at once; an unknown outcome → asked by key, then re-sent with the same
//! key after the in-flight window; a cancelled order's reservation is
//! released once its outcome is known.

use crate::Downstreams;
use crate::events::order_event;
use crate::ingress::{self, Message};
use crate::operation::{INVENTORY, conclude, decide_operation, placed};
use crate::{cancel, deadline};
use orderflow_broker::Incoming;
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Stage};
use orderflow_downstream::Operation;
use orderflow_downstream::api::Reservation;
use orderflow_runtime::{Admission, Check, Effect, Entry, Env, Error, Job, StageLogic};
use orderflow_store::OrderRecord;
use std::sync::Arc;

const OWNED: [OrderState; 2] = [OrderState::Received, OrderState::InventoryPending];

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
        match ingress::read(&job.body) {
            Ok(Message::Step(step)) if step.check == Some(Check::Deadline) => {
                return Ok(deadline::check(&INVENTORY, env, order, &OWNED));
            }
            Ok(Message::Cancel { .. }) if !INVENTORY.owns(order.state) => {
                return Ok(cancel::elsewhere(order));
            }
            _ => {}
        }
        if !INVENTORY.owns(order.state) {
            // A duplicate, or the order moved on: nothing to do here.
            return Ok(Effect::default());
        }
        let placed = match placed(order) {
            Ok(placed) => placed,
            Err(unreadable) => return Ok(*unreadable),
        };
        let api = &self.downstreams.inventory;
        let key = INVENTORY.key(order, Operation::Reserve);
        let decided = decide_operation(
            &INVENTORY,
            env,
            &api.0,
            order,
            job,
            (
                || api.reserve(&key, &order.order_id, &placed.items),
                || api.status_of(&key),
            ),
            |r: &Reservation| &r.reservation_id,
        )
        .await?;
        let mut effect = conclude(&INVENTORY, env, &self.downstreams, order, job, &decided).await;
        if job.runs == 1 && order.state == OrderState::Received {
            // The order's first event, sent with the first thing done to it.
            effect
                .emissions
                .insert(0, order_event(OrderState::Received, None));
        }
        Ok(effect)
    }
}
