//! The producer contract: the messages producers publish to the ingress
//! exchange, versioned by their `schema` field.
//!
//! Validation walks the raw JSON and reports every problem at once, each with
//! its JSON Pointer path, so a producer can fix a message in one go. Only a
//! message without problems becomes a typed [`OrderPlaced`] or [`OrderCancel`].
//! `docs/schemas/*.json` describe the same rules; a test keeps them in step.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

pub const ORDER_PLACED_V1: &str = "order.placed/v1";
pub const ORDER_CANCEL_V1: &str = "order.cancel/v1";

/// Upper bounds that keep one message small and its total free of overflow:
/// 100 lines × 1,000 units × 10^12 minor units stays far below `u64::MAX`.
pub const MAX_ITEMS: usize = 100;
pub const MAX_QUANTITY: u64 = 1000;
pub const MAX_UNIT_PRICE: u64 = 1_000_000_000_000;
const MAX_TEXT: usize = 256;
const MAX_ID: usize = 64;

/// An order id: 1–64 characters of `[A-Za-z0-9_-]`, so it is safe inside
/// queue headers, Redis keys and idempotency keys as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(String);

impl OrderId {
    pub fn parse(s: &str) -> Option<OrderId> {
        is_order_id(s).then(|| OrderId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_order_id(s: &str) -> bool {
    (1..=MAX_ID).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub sku: String,
    pub quantity: u64,
    /// Minor units of the order's currency (cents for USD).
    pub unit_price: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

/// `order.placed/v1`: a customer placed an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub schema: String,
    pub order_id: OrderId,
    pub customer_id: String,
    pub items: Vec<LineItem>,
    /// ISO 4217 alphabetic code.
    pub currency: String,
    pub payment_token: String,
    pub shipping_address: ShippingAddress,
    /// RFC 3339, kept as the producer wrote it.
    pub placed_at: String,
    /// An earlier order of the same customer that this one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<OrderId>,
}

impl OrderPlaced {
    /// The amount to charge, in minor units. Cannot overflow within the
    /// contract's bounds.
    pub fn total(&self) -> u64 {
        self.items.iter().map(|i| i.quantity * i.unit_price).sum()
    }
}

/// `order.cancel/v1`: the customer or a producer asks to cancel an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancel {
    pub schema: String,
    pub order_id: OrderId,
    pub reason: String,
}

/// A message from the ingress exchange, once valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Placed(Box<OrderPlaced>),
    Cancel(OrderCancel),
}

/// One thing wrong with a message, at a JSON Pointer path (`/items/0/sku`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)
    }
}

/// Every problem found in a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid message: {}", .problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("; "))]
pub struct Invalid {
    pub problems: Vec<Problem>,
}

/// Parses any ingress message, dispatching on its `schema` field.
pub fn parse_inbound(bytes: &[u8]) -> Result<Inbound, Invalid> {
    let value = parse_json(bytes)?;
    match value.get("schema").and_then(Value::as_str) {
        Some(ORDER_PLACED_V1) => {
            parse_order_placed_value(value).map(|order| Inbound::Placed(Box::new(order)))
        }
        Some(ORDER_CANCEL_V1) => parse_order_cancel_value(value).map(Inbound::Cancel),
        _ => Err(Invalid {
            problems: vec![Problem {
                path: "/schema".into(),
                message: format!(
                    "unknown or missing schema; expected \"{ORDER_PLACED_V1}\" or \"{ORDER_CANCEL_V1}\""
                ),
            }],
        }),
    }
}

pub fn parse_order_placed(bytes: &[u8]) -> Result<OrderPlaced, Invalid> {
    parse_order_placed_value(parse_json(bytes)?)
}

pub fn parse_order_cancel(bytes: &[u8]) -> Result<OrderCancel, Invalid> {
    parse_order_cancel_value(parse_json(bytes)?)
}

fn parse_json(bytes: &[u8]) -> Result<Value, Invalid> {
    serde_json::from_slice(bytes).map_err(|e| Invalid {
        problems: vec![Problem {
            path: String::new(),
            message: format!("not valid JSON: {e}"),
        }],
    })
}

fn parse_order_placed_value(value: Value) -> Result<OrderPlaced, Invalid> {
    let mut check = Checker::default();
    if let Some(root) = check.object("", &value) {
        check.only_keys(
            "",
            root,
            &[
                "schema",
                "order_id",
                "customer_id",
                "items",
                "currency",
                "payment_token",
                "shipping_address",
                "placed_at",
                "supersedes",
            ],
        );
        check.constant("/schema", root.get("schema"), ORDER_PLACED_V1);
        let order_id = check.order_id("/order_id", root.get("order_id"));
        check.text("/customer_id", root.get("customer_id"), MAX_ID);
        check.items("/items", root.get("items"));
        check.pattern(
            "/currency",
            root.get("currency"),
            3,
            "an ISO 4217 code like \"EUR\"",
        );
        check.text("/payment_token", root.get("payment_token"), MAX_TEXT);
        check.address("/shipping_address", root.get("shipping_address"));
        check.timestamp("/placed_at", root.get("placed_at"));
        if let Some(supersedes) = root.get("supersedes") {
            let earlier = check.order_id("/supersedes", Some(supersedes));
            if earlier.is_some() && earlier == order_id {
                check.problem("/supersedes", "an order cannot supersede itself");
            }
        }
    }
    check.finish(value)
}

fn parse_order_cancel_value(value: Value) -> Result<OrderCancel, Invalid> {
    let mut check = Checker::default();
    if let Some(root) = check.object("", &value) {
        check.only_keys("", root, &["schema", "order_id", "reason"]);
        check.constant("/schema", root.get("schema"), ORDER_CANCEL_V1);
        check.order_id("/order_id", root.get("order_id"));
        check.text("/reason", root.get("reason"), 512);
    }
    check.finish(value)
}

/// Collects problems while walking a message; never stops at the first.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn finish<T: serde::de::DeserializeOwned>(self, value: Value) -> Result<T, Invalid> {
        if !self.problems.is_empty() {
            return Err(Invalid {
                problems: self.problems,
            });
        }
        // Every rule serde relies on was checked above, so this cannot fail;
        // map it anyway rather than panic on a message.
        serde_json::from_value(value).map_err(|e| Invalid {
            problems: vec![Problem {
                path: String::new(),
                message: e.to_string(),
            }],
        })
    }

    fn required<'v>(&mut self, path: &str, value: Option<&'v Value>) -> Option<&'v Value> {
        if value.is_none() {
            self.problem(path, "is required");
        }
        value
    }

    fn object<'v>(&mut self, path: &str, value: &'v Value) -> Option<&'v Map<String, Value>> {
        let object = value.as_object();
        if object.is_none() {
            self.problem(path, "must be an object");
        }
        object
    }

    fn only_keys(&mut self, path: &str, object: &Map<String, Value>, allowed: &[&str]) {
        for key in object.keys().filter(|k| !allowed.contains(&k.as_str())) {
            self.problem(
                &format!("{path}/{key}"),
                "is not part of this schema (a typo? new fields need a new schema version)",
            );
        }
    }

    fn string<'v>(&mut self, path: &str, value: Option<&'v Value>) -> Option<&'v str> {
        let value = self.required(path, value)?;
        let s = value.as_str();
        if s.is_none() {
            self.problem(path, "must be a string");
        }
        s
    }

    fn constant(&mut self, path: &str, value: Option<&Value>, expected: &str) {
        if let Some(s) = self.string(path, value)
            && s != expected
        {
            self.problem(path, format!("must be \"{expected}\""));
        }
    }

    fn text(&mut self, path: &str, value: Option<&Value>, max: usize) {
        if let Some(s) = self.string(path, value) {
            let len = s.chars().count();
            if s.trim().is_empty() {
                self.problem(path, "must not be empty");
            } else if len > max {
                self.problem(path, format!("must be at most {max} characters, got {len}"));
            }
        }
    }

    fn order_id(&mut self, path: &str, value: Option<&Value>) -> Option<String> {
        let s = self.string(path, value)?;
        if is_order_id(s) {
            Some(s.to_owned())
        } else {
            self.problem(path, "must be 1–64 characters of A-Z, a-z, 0-9, _ and -");
            None
        }
    }

    /// Exactly `len` uppercase ASCII letters.
    fn pattern(&mut self, path: &str, value: Option<&Value>, len: usize, what: &str) {
        if let Some(s) = self.string(path, value)
            && !(s.len() == len && s.bytes().all(|b| b.is_ascii_uppercase()))
        {
            self.problem(path, format!("must be {what}"));
        }
    }

    fn integer(&mut self, path: &str, value: Option<&Value>, min: u64, max: u64) {
        let Some(value) = self.required(path, value) else {
            return;
        };
        match value.as_u64() {
            Some(n) if (min..=max).contains(&n) => {}
            _ => self.problem(path, format!("must be an integer from {min} to {max}")),
        }
    }

    fn timestamp(&mut self, path: &str, value: Option<&Value>) {
        if let Some(s) = self.string(path, value)
            && s.parse::<jiff::Timestamp>().is_err()
        {
            self.problem(
                path,
                "must be an RFC 3339 date-time like 2026-11-28T10:15:00Z",
            );
        }
    }

    fn items(&mut self, path: &str, value: Option<&Value>) {
        let Some(value) = self.required(path, value) else {
            return;
        };
        let Some(items) = value.as_array() else {
            self.problem(path, "must be an array");
            return;
        };
        if items.is_empty() || items.len() > MAX_ITEMS {
            self.problem(path, format!("must hold 1 to {MAX_ITEMS} items"));
        }
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}/{i}");
            if let Some(object) = self.object(&item_path, item) {
                self.only_keys(&item_path, object, &["sku", "quantity", "unit_price"]);
                self.text(&format!("{item_path}/sku"), object.get("sku"), MAX_ID);
                self.integer(
                    &format!("{item_path}/quantity"),
                    object.get("quantity"),
                    1,
                    MAX_QUANTITY,
                );
                self.integer(
                    &format!("{item_path}/unit_price"),
                    object.get("unit_price"),
                    0,
                    MAX_UNIT_PRICE,
                );
            }
        }
    }

    fn address(&mut self, path: &str, value: Option<&Value>) {
        let Some(value) = self.required(path, value) else {
            return;
        };
        let Some(object) = self.object(path, value) else {
            return;
        };
        self.only_keys(
            path,
            object,
            &["name", "line1", "line2", "city", "postal_code", "country"],
        );
        for field in ["name", "line1", "city", "postal_code"] {
            self.text(&format!("{path}/{field}"), object.get(field), MAX_TEXT);
        }
        if let Some(line2) = object.get("line2") {
            self.text(&format!("{path}/line2"), Some(line2), MAX_TEXT);
        }
        self.pattern(
            &format!("{path}/country"),
            object.get("country"),
            2,
            "an ISO 3166-1 alpha-2 code like \"DE\"",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn valid_order() -> Value {
        json!({
            "schema": "order.placed/v1",
            "order_id": "ord-1",
            "customer_id": "cust-1",
            "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": 1250}],
            "currency": "EUR",
            "payment_token": "tok_ok",
            "shipping_address": {
                "name": "Ada", "line1": "1 Main St", "city": "Berlin",
                "postal_code": "10115", "country": "DE"
            },
            "placed_at": "2026-11-28T10:15:00Z"
        })
    }

    fn problems(value: &Value) -> Vec<String> {
        match parse_inbound(value.to_string().as_bytes()) {
            Ok(_) => vec![],
            Err(invalid) => invalid.problems.into_iter().map(|p| p.path).collect(),
        }
    }

    #[test]
    fn a_valid_order_parses_and_totals() {
        let Ok(Inbound::Placed(order)) = parse_inbound(valid_order().to_string().as_bytes()) else {
            panic!("valid order refused");
        };
        assert_eq!(order.order_id.as_str(), "ord-1");
        assert_eq!(order.total(), 2500);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_path() {
        let mut order = valid_order();
        order["order_id"] = json!("bad id!");
        order["items"][0]["quantity"] = json!(0);
        order["currency"] = json!("eur");
        order["shipping_address"]["country"] = json!("Germany");
        order["shipping_address"]
            .as_object_mut()
            .unwrap()
            .remove("city");
        order["placed_at"] = json!("yesterday");
        order["colour"] = json!("red");
        assert_eq!(
            problems(&order),
            [
                "/colour",
                "/order_id",
                "/items/0/quantity",
                "/currency",
                "/shipping_address/city",
                "/shipping_address/country",
                "/placed_at",
            ]
        );
    }

    #[test]
    fn an_order_cannot_supersede_itself() {
        let mut order = valid_order();
        order["supersedes"] = json!("ord-1");
        assert_eq!(problems(&order), ["/supersedes"]);
        order["supersedes"] = json!("ord-0");
        assert!(problems(&order).is_empty());
    }

    #[test]
    fn unknown_schema_and_non_json_are_refused() {
        assert_eq!(problems(&json!({"schema": "order.placed/v2"})), ["/schema"]);
        let err = parse_inbound(b"{not json").unwrap_err();
        assert!(err.problems[0].message.starts_with("not valid JSON"));
    }

    #[test]
    fn a_cancel_needs_an_order_and_a_reason() {
        let cancel =
            json!({"schema": "order.cancel/v1", "order_id": "ord-1", "reason": "changed mind"});
        assert!(matches!(
            parse_inbound(cancel.to_string().as_bytes()),
            Ok(Inbound::Cancel(c)) if c.reason == "changed mind"
        ));
        assert_eq!(
            problems(&json!({"schema": "order.cancel/v1", "reason": ""})),
            ["/order_id", "/reason"]
        );
    }

    #[test]
    fn order_ids_are_bounded() {
        assert!(OrderId::parse(&"a".repeat(64)).is_some());
        assert!(OrderId::parse(&"a".repeat(65)).is_none());
        assert!(OrderId::parse("").is_none());
        assert!(OrderId::parse("a:b").is_none());
    }
}
