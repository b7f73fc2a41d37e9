//! Deterministic idempotency keys: the same order, stage and operation give
//! the same key on every attempt, redelivery, replay and worker, so the
//! downstream can recognise a repeat.

use orderflow_core::Stage;
use orderflow_core::message::OrderId;
use std::fmt;

/// The downstream operations orderflow performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Reserve,
    Commit,
    Release,
    Charge,
    Refund,
    Ship,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Reserve => "reserve",
            Operation::Commit => "commit",
            Operation::Release => "release",
            Operation::Charge => "charge",
            Operation::Refund => "refund",
            Operation::Ship => "ship",
        }
    }

    /// The operation a stage's work is: what an order in the stage's entry
    /// or pending state waits for.
    pub fn work_of(stage: Stage) -> Operation {
        match stage {
            Stage::Inventory => Operation::Reserve,
            Stage::Payment => Operation::Charge,
            Stage::Shipping => Operation::Ship,
        }
    }

    /// The stage whose downstream performs this operation.
    pub fn stage(self) -> Stage {
        match self {
            Operation::Reserve | Operation::Commit | Operation::Release => Stage::Inventory,
            Operation::Charge | Operation::Refund => Stage::Payment,
            Operation::Ship => Stage::Shipping,
        }
    }
}

/// `{order_id}.{stage}.{operation}`: order ids are `[A-Za-z0-9_-]`, so the
/// dots cannot be ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn new(order_id: &OrderId, operation: Operation) -> IdempotencyKey {
        IdempotencyKey(format!(
            "{order_id}.{}.{}",
            operation.stage(),
            operation.as_str()
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The order the key was made for (its ids hold no dots).
    pub fn order_id(&self) -> &str {
        self.0.split('.').next().unwrap_or_default()
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_distinct_per_operation() {
        let order = OrderId::parse("ord-7").unwrap();
        let charge = IdempotencyKey::new(&order, Operation::Charge);
        assert_eq!(charge.as_str(), "ord-7.payment.charge");
        assert_eq!(charge, IdempotencyKey::new(&order, Operation::Charge));
        assert_ne!(charge, IdempotencyKey::new(&order, Operation::Refund));
        assert_eq!(charge.order_id(), "ord-7");
    }
}
