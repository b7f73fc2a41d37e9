//! Which process this is: one of the three stage workers or the reconciler.

use orderflow_core::Stage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Inventory,
    Payment,
    Shipping,
    Reconciler,
}

impl Role {
    /// The binary's name, also the start of the default actor.
    pub fn binary(self) -> &'static str {
        match self {
            Role::Inventory => "inventory-worker",
            Role::Payment => "payment-worker",
            Role::Shipping => "shipping-worker",
            Role::Reconciler => "reconciler",
        }
    }

    /// The `role` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Inventory => "inventory",
            Role::Payment => "payment",
            Role::Shipping => "shipping",
            Role::Reconciler => "reconciler",
        }
    }

    /// The stage whose work queue this role consumes; the reconciler
    /// consumes none.
    pub fn stage(self) -> Option<Stage> {
        match self {
            Role::Inventory => Some(Stage::Inventory),
            Role::Payment => Some(Stage::Payment),
            Role::Shipping => Some(Stage::Shipping),
            Role::Reconciler => None,
        }
    }

    /// Health and metrics address: one port per role, so all four run side
    /// by side on a developer's machine without settings.
    pub fn default_listen(self) -> &'static str {
        match self {
            Role::Inventory => "127.0.0.1:9101",
            Role::Payment => "127.0.0.1:9102",
            Role::Shipping => "127.0.0.1:9103",
            Role::Reconciler => "127.0.0.1:9104",
        }
    }

    /// One line for `--help`.
    pub(crate) fn about(self) -> &'static str {
        match self {
            Role::Inventory => "orderflow inventory stage worker: reserves stock for placed orders",
            Role::Payment => "orderflow payment stage worker: charges reserved orders",
            Role::Shipping => "orderflow shipping stage worker: ships paid orders",
            Role::Reconciler => {
                "orderflow reconciler: tracks shipments to delivery, re-checks pending payments, escalates stuck orders"
            }
        }
    }
}
