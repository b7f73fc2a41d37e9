//! Customer-facing events: one per transition, on `{ns}.events` with the
//! routing key `order.<state>` (and `fulfilment.<step>` while a shipment
//! moves), in words a customer can read.

use orderflow_core::OrderState;
use orderflow_runtime::Emission;

/// The event announcing that the order entered `state`.
pub fn order_event(state: OrderState, reason: Option<&str>) -> Emission {
    Emission::Event {
        routing_key: format!("order.{state}"),
        state: state.to_string(),
        reason: reason.map(str::to_owned),
        message: customer_message(state).to_owned(),
    }
}

/// The event announcing a shipment's fulfilment step.
pub fn fulfilment_event(step: &str) -> Emission {
    Emission::Event {
        routing_key: format!("fulfilment.{step}"),
        state: OrderState::ShipmentAccepted.to_string(),
        reason: Some(step.to_owned()),
        message: format!("Your parcel: {}.", step.replace('_', " ")),
    }
}

fn customer_message(state: OrderState) -> &'static str {
    match state {
        OrderState::Received => "We have received your order.",
        OrderState::InventoryPending => "We are checking stock for your order.",
        OrderState::Reserved => "Your items are reserved.",
        OrderState::PaymentPending => {
            "Your payment is being confirmed; you will not be charged twice."
        }
        OrderState::Paid => "Your payment is confirmed.",
        OrderState::ShippingPending => "We are booking your shipment.",
        OrderState::ShipmentAccepted => "Your order has been handed to the carrier.",
        OrderState::Delivered => "Your order has been delivered.",
        OrderState::Rejected => "We could not accept your order.",
        OrderState::Cancelled => "Your order is cancelled; anything charged is refunded.",
        OrderState::Blocked | OrderState::Escalated => {
            "Your order needs a closer look; our team will contact you."
        }
    }
}
