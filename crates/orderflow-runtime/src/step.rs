//! The message a stage sends to the next stage's work queue, and to its own
//! delay tiers. The order itself lives in the store; the message only names
//! it, so a redelivered or deferred copy always works on the current order.

use orderflow_core::Stage;
use orderflow_core::message::{Invalid, OrderId, Problem};
use serde::{Deserialize, Serialize};

pub const STEP_V1: &str = "orderflow.step/v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepMessage {
    pub schema: String,
    pub order_id: OrderId,
    pub stage: Stage,
    /// Set by the reconciler when it asks the stage to look at the order
    /// for a reason other than the stage's own work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
}

/// What the reconciler asks a stage to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Poll an accepted shipment's fulfilment (shipping).
    Fulfilment,
    /// The order has been in its state past the stage's deadline: escalate
    /// it as `stuck` if it still is.
    Deadline,
}

impl StepMessage {
    pub fn new(order_id: &OrderId, stage: Stage) -> StepMessage {
        StepMessage {
            schema: STEP_V1.to_owned(),
            order_id: order_id.clone(),
            stage,
            check: None,
        }
    }

    /// The reconciler's request that `stage` look at the order.
    pub fn check(order_id: &OrderId, stage: Stage, check: Check) -> StepMessage {
        StepMessage {
            check: Some(check),
            ..StepMessage::new(order_id, stage)
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a step message always serializes")
    }

    /// Parses a step message for `stage`; anything else is malformed.
    pub fn parse(bytes: &[u8], stage: Stage) -> Result<StepMessage, Invalid> {
        let invalid = |path: &str, message: String| Invalid {
            problems: vec![Problem {
                path: path.to_owned(),
                message,
            }],
        };
        let step: StepMessage = serde_json::from_slice(bytes)
            .map_err(|e| invalid("", format!("not a {STEP_V1} message: {e}")))?;
        if step.schema != STEP_V1 {
            return Err(invalid("/schema", format!("must be \"{STEP_V1}\"")));
        }
        if OrderId::parse(step.order_id.as_str()).is_none() {
            return Err(invalid(
                "/order_id",
                "must be 1–64 characters of A-Z, a-z, 0-9, _ and -".into(),
            ));
        }
        if step.stage != stage {
            return Err(invalid(
                "/stage",
                format!("is {}, but this is the {stage} queue", step.stage),
            ));
        }
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_message_round_trips() {
        let id = OrderId::parse("o-1").unwrap();
        let bytes = StepMessage::new(&id, Stage::Payment).to_bytes();
        assert_eq!(
            StepMessage::parse(&bytes, Stage::Payment).unwrap().order_id,
            id
        );
    }

    #[test]
    fn a_step_for_another_stage_or_a_bad_id_is_malformed() {
        let id = OrderId::parse("o-1").unwrap();
        let bytes = StepMessage::new(&id, Stage::Payment).to_bytes();
        assert_eq!(
            StepMessage::parse(&bytes, Stage::Shipping)
                .unwrap_err()
                .problems[0]
                .path,
            "/stage"
        );
        let bad = br#"{"schema":"orderflow.step/v1","order_id":"a b","stage":"payment"}"#;
        assert_eq!(
            StepMessage::parse(bad, Stage::Payment)
                .unwrap_err()
                .problems[0]
                .path,
            "/order_id"
        );
        assert!(StepMessage::parse(b"[]", Stage::Payment).is_err());
    }
}
