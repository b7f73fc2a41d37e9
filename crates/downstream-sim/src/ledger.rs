//! The ground truth of what really happened downstream, as `GET /_ledger`
//! returns it. The types deserialize too, so the fleet's tests can fetch the
//! ledger and check invariants (one charge per order, ...) against it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;

/// Everything the three APIs really did, plus how often each endpoint was called.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub reservations: Vec<Reservation>,
    pub payments: Vec<Payment>,
    pub shipments: Vec<Shipment>,
    /// Requests received per endpoint, faulted and rejected ones included.
    pub calls: BTreeMap<Endpoint, u64>,
}

impl Ledger {
    /// Requests received by `endpoint` so far.
    pub fn calls_to(&self, endpoint: Endpoint) -> u64 {
        self.calls.get(&endpoint).copied().unwrap_or(0)
    }
}

/// A line of an order: `quantity` units of `sku`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: String,
    /// The `Idempotency-Key` of the request that created it.
    pub key: String,
    pub order_id: String,
    pub items: Vec<Item>,
    pub state: ReservationState,
    #[serde(with = "millis")]
    pub created_at: Timestamp,
    #[serde(with = "millis")]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    Reserved,
    Committed,
    Released,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub id: String,
    pub key: String,
    pub order_id: String,
    /// In minor units (cents).
    pub amount: u64,
    pub currency: String,
    pub state: PaymentState,
    #[serde(with = "millis")]
    pub created_at: Timestamp,
    #[serde(with = "millis")]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    Processing,
    Succeeded,
    Failed,
    Refunded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub id: String,
    pub key: String,
    pub order_id: String,
    pub state: ShipmentState,
    /// Why the shipment stopped, when `state` is `exception`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_code: Option<String>,
    #[serde(with = "millis")]
    pub created_at: Timestamp,
    #[serde(with = "millis")]
    pub updated_at: Timestamp,
}

/// Fulfilment steps in order; `exception` can replace any step after `accepted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentState {
    Accepted,
    Picking,
    Packed,
    HandedOff,
    Delivered,
    Exception,
}

/// RFC 3339 in UTC with exactly three fractional digits, so ledger times line
/// up with the fleet's millisecond timestamps when compared as text.
mod millis {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_have_milliseconds_and_round_trip() {
        let at = Timestamp::from_millisecond(1_700_000_000_120).unwrap();
        let payment = Payment {
            id: "pay_000001".into(),
            key: "k".into(),
            order_id: "o-1".into(),
            amount: 1250,
            currency: "EUR".into(),
            state: PaymentState::Succeeded,
            created_at: at,
            updated_at: at,
        };
        let json = serde_json::to_value(&payment).unwrap();
        assert_eq!(json["created_at"], "2023-11-14T22:13:20.120Z");
        assert_eq!(json["state"], "succeeded");
        let back: Payment = serde_json::from_value(json).unwrap();
        assert_eq!(back, payment);
    }
}
