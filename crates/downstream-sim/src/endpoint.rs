//! The three downstream APIs and the nine endpoints they expose, by the names
//! the profile, the call counts and the docs use (`payment.charge`, ...).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One of the three downstream services the fleet calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    Inventory,
    Payment,
    Shipping,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::Inventory => "inventory",
            Api::Payment => "payment",
            Api::Shipping => "shipping",
        }
    }
}

/// One endpoint of a downstream API; the unit that faults and call counts are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    InventoryReserve,
    InventoryStatus,
    InventoryCommit,
    InventoryRelease,
    PaymentCharge,
    PaymentStatus,
    PaymentRefund,
    ShippingCreate,
    ShippingStatus,
}

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::InventoryReserve,
        Endpoint::InventoryStatus,
        Endpoint::InventoryCommit,
        Endpoint::InventoryRelease,
        Endpoint::PaymentCharge,
        Endpoint::PaymentStatus,
        Endpoint::PaymentRefund,
        Endpoint::ShippingCreate,
        Endpoint::ShippingStatus,
    ];

    /// The dotted name used in profiles and in the ledger's `calls`.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::InventoryReserve => "inventory.reserve",
            Endpoint::InventoryStatus => "inventory.status",
            Endpoint::InventoryCommit => "inventory.commit",
            Endpoint::InventoryRelease => "inventory.release",
            Endpoint::PaymentCharge => "payment.charge",
            Endpoint::PaymentStatus => "payment.status",
            Endpoint::PaymentRefund => "payment.refund",
            Endpoint::ShippingCreate => "shipping.create",
            Endpoint::ShippingStatus => "shipping.status",
        }
    }

    pub fn api(self) -> Api {
        match self {
            Endpoint::InventoryReserve
            | Endpoint::InventoryStatus
            | Endpoint::InventoryCommit
            | Endpoint::InventoryRelease => Api::Inventory,
            Endpoint::PaymentCharge | Endpoint::PaymentStatus | Endpoint::PaymentRefund => {
                Api::Payment
            }
            Endpoint::ShippingCreate | Endpoint::ShippingStatus => Api::Shipping,
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name matched no endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown endpoint {0:?}")]
pub struct UnknownEndpoint(pub String);

impl FromStr for Endpoint {
    type Err = UnknownEndpoint;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Endpoint::ALL
            .into_iter()
            .find(|endpoint| endpoint.name() == name)
            .ok_or_else(|| UnknownEndpoint(name.to_owned()))
    }
}

// By name rather than by variant, so JSON maps read `"payment.charge": 3`.
impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for endpoint in Endpoint::ALL {
            assert_eq!(endpoint.name().parse::<Endpoint>(), Ok(endpoint));
            assert!(endpoint.name().starts_with(endpoint.api().name()));
        }
        assert!("payment.charg".parse::<Endpoint>().is_err());
    }
}
