//! The order state machine, as a table.
//!
//! Every legal transition is one row of [`TRANSITIONS`]; nothing else in the
//! fleet decides which moves are legal. The store's compare-and-set checks a
//! move against this table before it writes, and `docs/states.md` is generated
//! from it (a test keeps the two equal).

use crate::stage::Stage;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where an order is. `*_pending` means the outcome of that stage's downstream
/// call is not yet known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    Received,
    InventoryPending,
    Reserved,
    PaymentPending,
    Paid,
    ShippingPending,
    ShipmentAccepted,
    Delivered,
    Rejected,
    Cancelled,
    Blocked,
    Escalated,
}

/// What an order state asks of the fleet and its operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The fleet is still working on it.
    InFlight,
    /// Done; nothing more happens automatically or manually.
    Terminal,
    /// Parked until a person decides; the state carries a reason.
    NeedsPerson,
}

impl OrderState {
    pub const ALL: [OrderState; 12] = [
        OrderState::Received,
        OrderState::InventoryPending,
        OrderState::Reserved,
        OrderState::PaymentPending,
        OrderState::Paid,
        OrderState::ShippingPending,
        OrderState::ShipmentAccepted,
        OrderState::Delivered,
        OrderState::Rejected,
        OrderState::Cancelled,
        OrderState::Blocked,
        OrderState::Escalated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Received => "received",
            OrderState::InventoryPending => "inventory_pending",
            OrderState::Reserved => "reserved",
            OrderState::PaymentPending => "payment_pending",
            OrderState::Paid => "paid",
            OrderState::ShippingPending => "shipping_pending",
            OrderState::ShipmentAccepted => "shipment_accepted",
            OrderState::Delivered => "delivered",
            OrderState::Rejected => "rejected",
            OrderState::Cancelled => "cancelled",
            OrderState::Blocked => "blocked",
            OrderState::Escalated => "escalated",
        }
    }

    pub fn disposition(self) -> Disposition {
        match self {
            OrderState::Delivered | OrderState::Rejected | OrderState::Cancelled => {
                Disposition::Terminal
            }
            OrderState::Blocked | OrderState::Escalated => Disposition::NeedsPerson,
            _ => Disposition::InFlight,
        }
    }

    pub fn is_terminal(self) -> bool {
        self.disposition() == Disposition::Terminal
    }

    /// Entering this state requires a reason an operator can act on.
    pub fn requires_reason(self) -> bool {
        self.disposition() == Disposition::NeedsPerson
    }

    /// The stage whose message an order in this state waits for (and whose
    /// deadline it is held to); `None` once no stage works on it.
    /// An accepted shipment waits for the shipping stage's fulfilment
    /// checks; every other state is owned by the stage that works on it
    /// ([`Stage::works_on`]).
    pub fn owner(self) -> Option<Stage> {
        if self == OrderState::ShipmentAccepted {
            return Some(Stage::Shipping);
        }
        Stage::ALL.into_iter().find(|stage| stage.works_on(self))
    }
}

impl fmt::Display for OrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order state `{0}`; expected one of: {names}", names = state_names())]
pub struct UnknownState(pub String);

fn state_names() -> String {
    OrderState::ALL.map(OrderState::as_str).join(", ")
}

impl FromStr for OrderState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// One legal move and what causes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: OrderState,
    pub to: OrderState,
    /// Why the move happens, as shown in the state diagram and audit log.
    pub cause: &'static str,
}

const fn t(from: OrderState, to: OrderState, cause: &'static str) -> Transition {
    Transition { from, to, cause }
}

use OrderState::*;

/// Every legal transition. A move not in this table is an error.
pub const TRANSITIONS: &[Transition] = &[
    t(Received, InventoryPending, "reservation outcome unknown"),
    t(Received, Reserved, "stock reserved"),
    t(Received, Rejected, "insufficient stock or policy reject"),
    t(Received, Cancelled, "cancelled or superseded"),
    t(Received, Escalated, "inventory unresolved"),
    t(InventoryPending, Reserved, "reservation confirmed"),
    t(InventoryPending, Rejected, "reservation refused"),
    t(
        InventoryPending,
        Cancelled,
        "cancelled, reservation released",
    ),
    t(InventoryPending, Escalated, "inventory unresolved"),
    t(Reserved, PaymentPending, "charge outcome unknown"),
    t(Reserved, Paid, "charge succeeded"),
    t(Reserved, Rejected, "charge declined, reservation released"),
    t(Reserved, Cancelled, "cancelled, reservation released"),
    t(Reserved, Escalated, "payment unresolved"),
    t(PaymentPending, Paid, "charge confirmed"),
    t(
        PaymentPending,
        Rejected,
        "charge failed, reservation released",
    ),
    t(
        PaymentPending,
        Cancelled,
        "cancelled; charge failed or refunded, reservation released",
    ),
    t(PaymentPending, Escalated, "ambiguity window passed"),
    t(Paid, ShippingPending, "shipment outcome unknown"),
    t(Paid, ShipmentAccepted, "shipment accepted"),
    t(Paid, Blocked, "shipment refused"),
    t(Paid, Cancelled, "cancelled, refunded and released"),
    t(Paid, Escalated, "shipping unresolved"),
    t(ShippingPending, ShipmentAccepted, "shipment confirmed"),
    t(ShippingPending, Blocked, "shipment refused"),
    t(
        ShippingPending,
        Cancelled,
        "cancelled before acceptance, refunded and released",
    ),
    t(ShippingPending, Escalated, "shipping unresolved"),
    t(ShipmentAccepted, Delivered, "delivered"),
    t(ShipmentAccepted, Blocked, "cancel after shipment"),
    t(ShipmentAccepted, Escalated, "fulfilment exception or stall"),
    t(Blocked, Paid, "operator: ship"),
    t(Blocked, ShipmentAccepted, "operator: keep shipment"),
    t(Blocked, Cancelled, "operator: refund or cancel"),
    t(Blocked, Escalated, "operator: escalate"),
    t(Escalated, Received, "operator: retry inventory"),
    t(Escalated, Reserved, "operator: retry payment"),
    t(
        Escalated,
        Paid,
        "operator: payment succeeded or retry shipping",
    ),
    t(Escalated, ShipmentAccepted, "operator: shipment confirmed"),
    t(Escalated, Delivered, "delivery confirmed"),
    t(Escalated, Rejected, "operator: payment failed"),
    t(Escalated, Cancelled, "operator: cancel"),
    t(Escalated, Blocked, "operator: needs a business decision"),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("illegal transition {from} → {to}")]
    Illegal { from: OrderState, to: OrderState },
    #[error("entering {to} requires a reason")]
    MissingReason { to: OrderState },
}

/// Checks a move against the table. Entering `blocked` or `escalated`
/// requires a non-empty reason.
pub fn check_transition(
    from: OrderState,
    to: OrderState,
    reason: Option<&str>,
) -> Result<&'static Transition, TransitionError> {
    let row = TRANSITIONS
        .iter()
        .find(|row| row.from == from && row.to == to)
        .ok_or(TransitionError::Illegal { from, to })?;
    if to.requires_reason() && reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(TransitionError::MissingReason { to });
    }
    Ok(row)
}

/// The Mermaid state diagram of [`TRANSITIONS`], as kept in `docs/states.md`.
pub fn mermaid_diagram() -> String {
    let mut out = String::from("stateDiagram-v2\n    [*] --> received\n");
    for row in TRANSITIONS {
        out.push_str(&format!("    {} --> {}: {}\n", row.from, row.to, row.cause));
    }
    for state in OrderState::ALL.into_iter().filter(|s| s.is_terminal()) {
        out.push_str(&format!("    {state} --> [*]\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn state_names_round_trip() {
        for state in OrderState::ALL {
            assert_eq!(state.as_str().parse::<OrderState>(), Ok(state));
        }
        assert!("shipped".parse::<OrderState>().is_err());
    }

    #[test]
    fn terminal_states_have_no_way_out() {
        for row in TRANSITIONS {
            assert!(
                !row.from.is_terminal(),
                "{} leaves a terminal state",
                row.from
            );
        }
    }

    #[test]
    fn every_state_is_reachable_from_received() {
        let mut seen = HashSet::from([Received]);
        let mut frontier = vec![Received];
        while let Some(state) = frontier.pop() {
            for row in TRANSITIONS.iter().filter(|row| row.from == state) {
                if seen.insert(row.to) {
                    frontier.push(row.to);
                }
            }
        }
        assert_eq!(seen.len(), OrderState::ALL.len());
    }

    #[test]
    fn every_non_terminal_state_can_reach_a_person_or_an_end() {
        for state in OrderState::ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert!(
                TRANSITIONS
                    .iter()
                    .any(|row| row.from == state && row.to != state),
                "{state} is a dead end"
            );
        }
    }

    #[test]
    fn each_pair_appears_once_in_the_table() {
        let mut pairs = HashSet::new();
        for row in TRANSITIONS {
            assert!(
                pairs.insert((row.from, row.to)),
                "{} → {} twice",
                row.from,
                row.to
            );
        }
    }

    #[test]
    fn illegal_transitions_are_errors() {
        assert_eq!(
            check_transition(Received, Paid, None),
            Err(TransitionError::Illegal {
                from: Received,
                to: Paid
            })
        );
        assert!(check_transition(Delivered, Cancelled, None).is_err());
        // Shipping never rejects a paid order: it blocks it for a person.
        assert!(check_transition(ShippingPending, Rejected, None).is_err());
        assert!(check_transition(PaymentPending, Reserved, None).is_err());
    }

    #[test]
    fn entering_a_person_state_needs_a_reason() {
        assert_eq!(
            check_transition(Paid, Blocked, None),
            Err(TransitionError::MissingReason { to: Blocked })
        );
        assert!(check_transition(Paid, Blocked, Some("  ")).is_err());
        assert!(check_transition(Paid, Blocked, Some("unsupported_destination")).is_ok());
        assert!(check_transition(Reserved, Paid, None).is_ok());
    }

    #[test]
    fn shipping_is_reachable_only_through_a_confirmed_payment() {
        // I4 at the state level: every way into paid comes from a charge
        // confirmation or an operator's explicit word.
        for row in TRANSITIONS.iter().filter(|row| row.to == Paid) {
            assert!(
                matches!(row.from, Reserved | PaymentPending | Blocked | Escalated),
                "{} → paid",
                row.from
            );
        }
    }
}
