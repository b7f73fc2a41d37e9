//! An `order.cancel` for an order whose current state another stage owns.
//!
//! The request itself is already on the order (`ingress`). Where a stage's
//! message is on its way (reserved, paid, pending), that stage compensates
//! once its outcome is known; this only notes the hand-over. An accepted
//! shipment cannot be cancelled by the fleet: it is blocked for a person.
//! An order that has ended is not touched.

use crate::operation::{block, planned};
use orderflow_core::OrderState;
use orderflow_runtime::{Effect, Emission};
use orderflow_store::OrderRecord;

pub fn elsewhere(order: &OrderRecord) -> Effect {
    use OrderState::*;
    let note = |event: &str, why: String| Effect {
        note: Some(planned(
            order.state,
            Some(why),
            event,
            "cancel.hand_over",
            vec![],
        )),
        ..Effect::default()
    };
    match order.state {
        // The inventory stage itself handles these (see `inventory`).
        Received | InventoryPending => Effect::default(),
        Reserved | PaymentPending => note(
            "order.cancel_handed_over",
            "the payment stage compensates once the charge outcome is known".into(),
        ),
        Paid | ShippingPending => note(
            "order.cancel_handed_over",
            "the shipping stage refunds and releases before any shipment".into(),
        ),
        ShipmentAccepted => block(
            "cancel_after_shipment",
            None,
            "order.cancel_blocked",
            "cancel.after_shipment.block",
            vec![],
        ),
        Cancelled | Rejected => note(
            "order.cancel_ignored",
            format!("the order is already {}", order.state),
        ),
        Delivered | Blocked | Escalated => Effect {
            emissions: vec![Emission::Exception {
                reason: "cancel_refused".into(),
                outcome: None,
                detail: Some(format!(
                    "the order is {}; a person decides what cancelling means now",
                    order.state
                )),
                keep_original: true,
            }],
            ..note(
                "order.cancel_refused",
                format!("the order is {}", order.state),
            )
        },
    }
}
