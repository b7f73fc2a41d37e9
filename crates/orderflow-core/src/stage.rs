//! The three stages of the workflow, in order.

use crate::OrderState;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A stage of the order workflow. Each stage calls exactly one downstream API
/// of the same name and is run by its own worker binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Inventory,
    Payment,
    Shipping,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Inventory, Stage::Payment, Stage::Shipping];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Inventory => "inventory",
            Stage::Payment => "payment",
            Stage::Shipping => "shipping",
        }
    }

    /// The stage that runs after this one succeeds; `None` after shipping,
    /// where the reconciler takes over fulfilment tracking.
    pub fn next(self) -> Option<Stage> {
        match self {
            Stage::Inventory => Some(Stage::Payment),
            Stage::Payment => Some(Stage::Shipping),
            Stage::Shipping => None,
        }
    }

    /// The state the stage starts from: where its step message finds the
    /// order, and where an operator's retry sends it back to.
    pub fn entry(self) -> OrderState {
        match self {
            Stage::Inventory => OrderState::Received,
            Stage::Payment => OrderState::Reserved,
            Stage::Shipping => OrderState::Paid,
        }
    }

    /// The state while the stage's outcome is unknown.
    pub fn pending(self) -> OrderState {
        match self {
            Stage::Inventory => OrderState::InventoryPending,
            Stage::Payment => OrderState::PaymentPending,
            Stage::Shipping => OrderState::ShippingPending,
        }
    }

    /// The state the stage's confirmed success moves the order to.
    pub fn done(self) -> OrderState {
        match self {
            Stage::Inventory => OrderState::Reserved,
            Stage::Payment => OrderState::Paid,
            Stage::Shipping => OrderState::ShipmentAccepted,
        }
    }

    /// Whether the stage's operation is what an order in `state` waits
    /// for: its entry or its pending state.
    pub fn works_on(self, state: OrderState) -> bool {
        state == self.entry() || state == self.pending()
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stage `{0}`; expected one of: inventory, payment, shipping")]
pub struct UnknownStage(pub String);

impl FromStr for Stage {
    type Err = UnknownStage;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| UnknownStage(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_round_trip() {
        for stage in Stage::ALL {
            assert_eq!(stage.as_str().parse::<Stage>(), Ok(stage));
        }
        assert!("shipment".parse::<Stage>().is_err());
    }

    #[test]
    fn stages_run_in_workflow_order() {
        assert_eq!(Stage::Inventory.next(), Some(Stage::Payment));
        assert_eq!(Stage::Payment.next(), Some(Stage::Shipping));
        assert_eq!(Stage::Shipping.next(), None);
    }

    #[test]
    fn a_stage_ends_where_the_next_begins() {
        for stage in Stage::ALL {
            if let Some(next) = stage.next() {
                assert_eq!(stage.done(), next.entry(), "{stage}");
            }
            assert_eq!(stage.entry().owner(), Some(stage));
            assert_eq!(stage.pending().owner(), Some(stage));
        }
    }
}
