//! What producers publish: `order.placed/v1` and `order.cancel/v1` with
//! sensible defaults, and raw bytes for malformed input; all to the ingress
//! exchange `{ns}.orders`, confirmed by the broker.

use crate::Fleet;
use orderflow_broker::names::{ORDER_CANCEL, ORDER_PLACED};
use orderflow_broker::{Meta, Outgoing};
use serde_json::{Value, json};

/// An `order.placed/v1` message. Defaults: one line of `SKU-1` × 1 at 1250
/// cents, EUR, token `tok_ok`, an address in Germany.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub order_id: String,
    pub customer_id: String,
    /// `(sku, quantity, unit_price)`.
    pub items: Vec<(String, u64, u64)>,
    pub currency: String,
    pub payment_token: String,
    pub name: String,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
    pub supersedes: Option<String>,
}

/// Mostly good orders, and each business outcome the stages treat
/// differently: scarce stock, declines, slow and failed payments, a
/// refused destination.
pub fn mixed(prefix: &str, n: usize) -> Vec<Order> {
    (0..n)
        .map(|i| {
            let order = Order::new(&format!("{prefix}-{i}")).customer(&format!("cust-{}", i % 37));
            match i % 20 {
                0 => order.sku("SKU-SCARCE", 3),
                1 => order.token("tok_declined"),
                2 => order.token("tok_insufficient_funds"),
                3 => order.token("tok_processing"),
                4 => order.token("tok_processing_fail"),
                5 => order.country("ZZ"),
                6 => order.token("tok_fraud"),
                7 => order.sku("SKU-7", 2).line("SKU-8", 1, 300),
                _ => order,
            }
        })
        .collect()
}

impl Order {
    pub fn new(order_id: &str) -> Order {
        Order {
            order_id: order_id.into(),
            customer_id: "cust-1".into(),
            items: vec![("SKU-1".into(), 1, 1250)],
            currency: "EUR".into(),
            payment_token: "tok_ok".into(),
            name: "Ada Lovelace".into(),
            line1: "12 Analytical Row".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
            supersedes: None,
        }
    }

    /// The payment token: `tok_ok`, `tok_declined`, `tok_insufficient_funds`,
    /// `tok_fraud`, `tok_processing`, `tok_processing_fail`.
    pub fn token(mut self, token: &str) -> Order {
        self.payment_token = token.into();
        self
    }

    /// One line of `quantity` × `sku` (replacing the lines).
    pub fn sku(mut self, sku: &str, quantity: u64) -> Order {
        let price = self.items.first().map_or(1250, |i| i.2);
        self.items = vec![(sku.into(), quantity, price)];
        self
    }

    /// Adds a line.
    pub fn line(mut self, sku: &str, quantity: u64, unit_price: u64) -> Order {
        self.items.push((sku.into(), quantity, unit_price));
        self
    }

    pub fn unit_price(mut self, cents: u64) -> Order {
        for item in &mut self.items {
            item.2 = cents;
        }
        self
    }

    pub fn currency(mut self, code: &str) -> Order {
        self.currency = code.into();
        self
    }

    pub fn country(mut self, code: &str) -> Order {
        self.country = code.into();
        self
    }

    pub fn customer(mut self, id: &str) -> Order {
        self.customer_id = id.into();
        self
    }

    pub fn supersedes(mut self, earlier: &str) -> Order {
        self.supersedes = Some(earlier.into());
        self
    }

    /// The amount the payment provider should be asked for.
    pub fn total(&self) -> u64 {
        self.items.iter().map(|(_, q, p)| q * p).sum()
    }

    /// The message body.
    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "schema": "order.placed/v1",
            "order_id": self.order_id,
            "customer_id": self.customer_id,
            "items": self.items.iter().map(|(sku, quantity, unit_price)| json!({
                "sku": sku, "quantity": quantity, "unit_price": unit_price
            })).collect::<Vec<_>>(),
            "currency": self.currency,
            "payment_token": self.payment_token,
            "shipping_address": {
                "name": self.name, "line1": self.line1, "city": self.city,
                "postal_code": self.postal_code, "country": self.country
            },
            "placed_at": "2026-11-28T10:15:00Z",
        });
        if let Some(earlier) = &self.supersedes {
            body["supersedes"] = json!(earlier);
        }
        body
    }
}

/// An `order.cancel/v1` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    pub order_id: String,
    pub reason: String,
}

impl Cancel {
    pub fn new(order_id: &str) -> Cancel {
        Cancel {
            order_id: order_id.into(),
            reason: "customer changed their mind".into(),
        }
    }

    pub fn reason(mut self, reason: &str) -> Cancel {
        self.reason = reason.into();
        self
    }

    pub fn to_json(&self) -> Value {
        json!({"schema": "order.cancel/v1", "order_id": self.order_id, "reason": self.reason})
    }
}

impl Fleet {
    /// Publishes the order (confirmed) and remembers it for the invariants;
    /// returns its id. The message id is derived from the body, as a
    /// producer that re-sends the same order would keep it.
    pub async fn place(&self, order: &Order) -> String {
        let body = order.to_json();
        let bytes = serde_json::to_vec(&body).expect("json serializes");
        {
            let mut tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
            tracked.placed.entry(order.order_id.clone()).or_insert(body);
        }
        let id = format!("placed.{}.{}", order.order_id, short_hash(&bytes));
        self.publish_ingress(ORDER_PLACED, bytes, Some(id)).await;
        order.order_id.clone()
    }

    /// Publishes each order, in order.
    pub async fn place_all(&self, orders: &[Order]) -> Vec<String> {
        let mut ids = Vec::with_capacity(orders.len());
        for order in orders {
            ids.push(self.place(order).await);
        }
        ids
    }

    /// Publishes the order with a message id of the caller's choosing
    /// (a producer re-sending with a fresh id).
    pub async fn place_with_message_id(&self, order: &Order, message_id: &str) {
        let body = order.to_json();
        let bytes = serde_json::to_vec(&body).expect("json serializes");
        self.tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .placed
            .entry(order.order_id.clone())
            .or_insert(body);
        self.publish_ingress(ORDER_PLACED, bytes, Some(message_id.to_owned()))
            .await;
    }

    /// Publishes a cancellation (confirmed).
    pub async fn cancel(&self, cancel: &Cancel) {
        let bytes = serde_json::to_vec(&cancel.to_json()).expect("json serializes");
        let id = format!("cancel.{}.{}", cancel.order_id, short_hash(&bytes));
        self.publish_ingress(ORDER_CANCEL, bytes, Some(id)).await;
    }

    /// Publishes bytes the contract refuses, with routing key
    /// `order.placed`, and remembers them: I7 expects each in the inventory
    /// exception queue exactly once, with reason `malformed`.
    pub async fn publish_malformed(&self, bytes: &[u8]) {
        self.tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .malformed
            .push(bytes.to_vec());
        self.publish_ingress(ORDER_PLACED, bytes.to_vec(), None)
            .await;
    }

    /// Publishes `body` to the ingress exchange as it is, tracking nothing.
    pub async fn publish_raw(&self, routing_key: &str, body: Vec<u8>, message_id: Option<String>) {
        self.publish_ingress(routing_key, body, message_id).await;
    }

    async fn publish_ingress(&self, routing_key: &str, body: Vec<u8>, message_id: Option<String>) {
        let meta = Meta {
            message_id,
            timestamp: u64::try_from(jiff::Timestamp::now().as_second()).ok(),
            ..Meta::default()
        };
        let message = Outgoing {
            exchange: self.spec.names().orders_exchange(),
            routing_key: routing_key.to_owned(),
            body,
            meta,
        };
        // As a producer does: a publish the broker may not have stored (a
        // cluster node lost under it) is sent again, same message id.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match self.publisher.publish(message.clone()).await {
                Ok(()) => return,
                Err(e) if e.is_transient() && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => panic!(
                    "publishing to {}.orders: {}",
                    self.ns,
                    orderflow_broker::chain(&e)
                ),
            }
        }
    }
}

/// FNV-1a, 64 bits, as 16 hex digits: a stable message id per body.
fn short_hash(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_order_meets_the_producer_contract() {
        let order = Order::new("ord-1").supersedes("ord-0");
        let bytes = serde_json::to_vec(&order.to_json()).unwrap();
        let parsed = orderflow_core::message::parse_order_placed(&bytes).unwrap();
        assert_eq!(parsed.total(), order.total());
        let cancel = serde_json::to_vec(&Cancel::new("ord-1").to_json()).unwrap();
        assert!(orderflow_core::message::parse_order_cancel(&cancel).is_ok());
    }

    #[test]
    fn message_ids_follow_the_body() {
        assert_eq!(short_hash(b"a"), short_hash(b"a"));
        assert_ne!(short_hash(b"a"), short_hash(b"b"));
    }
}
