//! Typed calls of the three APIs (docs/downstream-api.md). Every mutating
//! call carries its deterministic idempotency key.

use crate::key::IdempotencyKey;
use crate::transport::{Answer, Contract, Downstream, Error, Expect};
use orderflow_core::Stage;
use orderflow_core::message::{LineItem, OrderId, ShippingAddress};
use orderflow_core::policy::Policy;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub reservation_id: String,
    pub status: String,
    /// Named by a status query's answer, not by an action's.
    #[serde(default)]
    pub order_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub payment_id: String,
    pub status: PaymentStatus,
    /// Named by a status query's answer, not by an action's.
    #[serde(default)]
    pub order_id: Option<String>,
}

/// A charge's state as the payment API names it (docs/downstream-api.md),
/// read at the edge: any other status is not the contract's answer
/// (`off_contract`), so no string the provider invents reaches a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Succeeded,
    /// Accepted, not complete: the outcome is still unknown.
    Processing,
    Failed,
    Refunded,
}

impl PaymentStatus {
    /// The contract's name, which the policy's classification rules match.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Processing => "processing",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Refunded => "refunded",
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub shipment_id: String,
    pub status: String,
    #[serde(default)]
    pub exception_code: Option<String>,
    /// Named by a status query's answer, not by an action's.
    #[serde(default)]
    pub order_id: Option<String>,
}

impl Contract for Reservation {
    fn status(&self) -> &str {
        &self.status
    }

    fn order_id(&self) -> Option<&str> {
        self.order_id.as_deref()
    }
}

impl Contract for Payment {
    fn status(&self) -> &str {
        self.status.as_str()
    }

    fn order_id(&self) -> Option<&str> {
        self.order_id.as_deref()
    }
}

impl Contract for Shipment {
    fn status(&self) -> &str {
        &self.status
    }

    fn order_id(&self) -> Option<&str> {
        self.order_id.as_deref()
    }
}

/// What each call's success may say, as docs/downstream-api.md has it.
const RESERVED: Expect = Expect(&["reserved"]);
const RESERVATION_STATES: Expect = Expect(&["reserved", "committed", "released"]);
const COMMITTED: Expect = Expect(&["committed"]);
const RELEASED: Expect = Expect(&["released"]);
const CHARGED: Expect = Expect(&["succeeded", "processing"]);
pub(crate) const PAYMENT_STATES: Expect =
    Expect(&["succeeded", "processing", "failed", "refunded"]);
const REFUNDED: Expect = Expect(&["refunded"]);
const SHIPMENT_ACCEPTED: Expect = Expect(&["accepted"]);
const SHIPMENT_STATES: Expect = Expect(&[
    "accepted",
    "picking",
    "packed",
    "handed_off",
    "delivered",
    "exception",
]);

/// The by-key status paths, for the start-up check.
const INVENTORY_STATUS: &str = "v1/reservations/by-key/";
const PAYMENT_STATUS: &str = "v1/payments/by-key/";
const SHIPPING_STATUS: &str = "v1/shipments/by-key/";

/// Order lines as the inventory and shipping APIs take them: no prices.
fn lines(items: &[LineItem]) -> Vec<Value> {
    items
        .iter()
        .map(|i| json!({"sku": i.sku, "quantity": i.quantity}))
        .collect()
}

pub struct InventoryApi(pub Downstream);
pub struct PaymentApi(pub Downstream);
pub struct ShippingApi(pub Downstream);

impl InventoryApi {
    pub fn new(base_url: &str, policy: &Policy) -> Result<InventoryApi, Error> {
        Downstream::new(
            Stage::Inventory,
            base_url,
            policy.downstream(Stage::Inventory),
        )
        .map(InventoryApi)
    }

    pub async fn reserve(
        &self,
        key: &IdempotencyKey,
        order_id: &OrderId,
        items: &[LineItem],
    ) -> Answer<Reservation> {
        let body = json!({"order_id": order_id, "items": lines(items)});
        self.0
            .action(
                "inventory.reserve",
                "v1/reservations",
                key,
                Some(&body),
                RESERVED,
            )
            .await
    }

    /// The start-up check: is the base URL the inventory API?
    pub async fn check_contract(&self) -> Result<(), String> {
        self.0.check_contract(INVENTORY_STATUS).await
    }

    /// Status query: the reservation made with `key`, if any.
    pub async fn status_of(&self, key: &IdempotencyKey) -> Answer<Reservation> {
        self.0
            .status(
                "inventory.status",
                INVENTORY_STATUS,
                key,
                RESERVATION_STATES,
            )
            .await
    }

    pub async fn commit(&self, key: &IdempotencyKey, reservation_id: &str) -> Answer<Reservation> {
        let path = format!("v1/reservations/{reservation_id}/commit");
        self.0
            .action("inventory.commit", &path, key, None, COMMITTED)
            .await
    }

    pub async fn release(&self, key: &IdempotencyKey, reservation_id: &str) -> Answer<Reservation> {
        let path = format!("v1/reservations/{reservation_id}/release");
        self.0
            .action("inventory.release", &path, key, None, RELEASED)
            .await
    }
}

impl PaymentApi {
    pub fn new(base_url: &str, policy: &Policy) -> Result<PaymentApi, Error> {
        Downstream::new(Stage::Payment, base_url, policy.downstream(Stage::Payment)).map(PaymentApi)
    }

    pub async fn charge(
        &self,
        key: &IdempotencyKey,
        order_id: &OrderId,
        amount: u64,
        currency: &str,
        payment_token: &str,
    ) -> Answer<Payment> {
        let body = json!({
            "order_id": order_id, "amount": amount, "currency": currency, "payment_token": payment_token
        });
        self.0
            .action("payment.charge", "v1/payments", key, Some(&body), CHARGED)
            .await
    }

    /// The start-up check: is the base URL the payment API?
    pub async fn check_contract(&self) -> Result<(), String> {
        self.0.check_contract(PAYMENT_STATUS).await
    }

    /// Status query: the charge made with `key`, if any.
    pub async fn payment(&self, key: &IdempotencyKey) -> Answer<Payment> {
        self.0
            .status("payment.status", PAYMENT_STATUS, key, PAYMENT_STATES)
            .await
    }

    pub async fn refund(&self, key: &IdempotencyKey, payment_id: &str) -> Answer<Payment> {
        let path = format!("v1/payments/{payment_id}/refund");
        self.0
            .action("payment.refund", &path, key, None, REFUNDED)
            .await
    }
}

impl ShippingApi {
    pub fn new(base_url: &str, policy: &Policy) -> Result<ShippingApi, Error> {
        Downstream::new(
            Stage::Shipping,
            base_url,
            policy.downstream(Stage::Shipping),
        )
        .map(ShippingApi)
    }

    pub async fn create(
        &self,
        key: &IdempotencyKey,
        order_id: &OrderId,
        address: &ShippingAddress,
        items: &[LineItem],
    ) -> Answer<Shipment> {
        let body = json!({"order_id": order_id, "address": address, "items": lines(items)});
        self.0
            .action(
                "shipping.create",
                "v1/shipments",
                key,
                Some(&body),
                SHIPMENT_ACCEPTED,
            )
            .await
    }

    /// The start-up check: is the base URL the shipping API?
    pub async fn check_contract(&self) -> Result<(), String> {
        self.0.check_contract(SHIPPING_STATUS).await
    }

    /// Status query: the shipment made with `key`, if any, and its progress.
    pub async fn shipment(&self, key: &IdempotencyKey) -> Answer<Shipment> {
        self.0
            .status("shipping.status", SHIPPING_STATUS, key, SHIPMENT_STATES)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_status_is_named_as_the_contract_names_it() {
        use PaymentStatus::*;
        for status in [Succeeded, Processing, Failed, Refunded] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        let invented = json!({"payment_id": "pay_1", "status": "approved"});
        assert!(serde_json::from_value::<Payment>(invented).is_err());
    }
}
