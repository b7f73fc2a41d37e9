//! A stage logic that calls no downstream: it moves the order one state per
//! hop. It measures the runtime alone (the benchmark) and drives the
//! runtime's own tests. Four hops, so an order crosses four queues:
//! inventory (received → reserved) → payment (→ paid) → shipping
//! (→ shipment_accepted) → inventory again (→ delivered).

use crate::effect::{Effect, Emission, Planned};
use crate::runner::{Env, Error, Job, StageLogic};
use orderflow_core::{OrderState, Stage};
use orderflow_store::OrderRecord;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How often each (order, hop) ran its "work": more than once means a
/// repeated side effect.
pub type Runs = Arc<Mutex<HashMap<(String, OrderState), u32>>>;

pub struct NoopStage {
    stage: Stage,
    runs: Runs,
    events: bool,
}

impl NoopStage {
    /// A hop that moves the order and hands it on, nothing more.
    pub fn new(stage: Stage, runs: Runs) -> NoopStage {
        NoopStage {
            stage,
            runs,
            events: false,
        }
    }

    /// Also publishes a customer event per hop.
    pub fn with_events(self) -> NoopStage {
        NoopStage {
            events: true,
            ..self
        }
    }

    /// The hop this stage makes from `state`: the next state and where the
    /// order goes after it.
    fn hop(&self, state: OrderState) -> Option<(OrderState, Option<Stage>)> {
        use OrderState::*;
        match (self.stage, state) {
            (Stage::Inventory, Received) => Some((Reserved, Some(Stage::Payment))),
            (Stage::Payment, Reserved) => Some((Paid, Some(Stage::Shipping))),
            (Stage::Shipping, Paid) => Some((ShipmentAccepted, Some(Stage::Inventory))),
            (Stage::Inventory, ShipmentAccepted) => Some((Delivered, None)),
            _ => None,
        }
    }
}

/// The states a no-op order passes through, in order.
pub const ROUTE: [OrderState; 5] = [
    OrderState::Received,
    OrderState::Reserved,
    OrderState::Paid,
    OrderState::ShipmentAccepted,
    OrderState::Delivered,
];

impl StageLogic for NoopStage {
    fn stage(&self) -> Stage {
        self.stage
    }

    async fn run(&self, order: &OrderRecord, _job: &Job, _env: &Env) -> Result<Effect, Error> {
        // Not this stage's turn (a duplicate, or already done): absorb it.
        let Some((to, next)) = self.hop(order.state) else {
            return Ok(Effect::default());
        };
        *self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((order.order_id.to_string(), to))
            .or_default() += 1;
        let mut emissions: Vec<Emission> = next
            .map(|stage| Emission::Next { stage })
            .into_iter()
            .collect();
        if self.events {
            emissions.push(Emission::Event {
                routing_key: format!("order.{to}"),
                state: to.to_string(),
                reason: None,
                message: format!("Your order is {to}."),
            });
        }
        Ok(Effect {
            transition: Some(Planned {
                to,
                reason: None,
                event: format!("noop_{to}"),
                rule: "noop.advance".into(),
                fields: vec![],
            }),
            emissions,
            note: None,
        })
    }
}
