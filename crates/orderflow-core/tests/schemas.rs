//! The published JSON Schemas (`docs/schemas/`) and the Rust validation
//! accept and refuse the same documents.

use orderflow_core::message::parse_inbound;
use serde_json::{Value, json};
use std::path::PathBuf;

fn schema(name: &str) -> jsonschema::Validator {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/schemas")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

fn order() -> Value {
    json!({
        "schema": "order.placed/v1",
        "order_id": "ord_2026-11-28_0001",
        "customer_id": "cust-42",
        "items": [
            {"sku": "SKU-1", "quantity": 1, "unit_price": 0},
            {"sku": "SKU-2", "quantity": 1000, "unit_price": 1_000_000_000_000u64}
        ],
        "currency": "USD",
        "payment_token": "tok_ok",
        "shipping_address": {
            "name": "Grace Hopper", "line1": "1 Navy Way", "line2": "Suite 2",
            "city": "Arlington", "postal_code": "22201", "country": "US"
        },
        "placed_at": "2026-11-28T10:15:00.123+01:00",
        "supersedes": "ord_2026-11-28_0000"
    })
}

fn cancel() -> Value {
    json!({"schema": "order.cancel/v1", "order_id": "ord-1", "reason": "customer asked"})
}

/// A named edit of a valid document, and whether the result is valid.
type Case = (&'static str, fn(&mut Value), bool);

fn order_cases() -> Vec<Case> {
    vec![
        ("as is", |_| {}, true),
        (
            "without optional fields",
            |v| {
                v.as_object_mut().unwrap().remove("supersedes");
                v["shipping_address"]
                    .as_object_mut()
                    .unwrap()
                    .remove("line2");
            },
            true,
        ),
        (
            "64-character id",
            |v| v["order_id"] = json!("a".repeat(64)),
            true,
        ),
        (
            "65-character id",
            |v| v["order_id"] = json!("a".repeat(65)),
            false,
        ),
        ("id with a colon", |v| v["order_id"] = json!("ord:1"), false),
        ("empty id", |v| v["order_id"] = json!(""), false),
        ("numeric id", |v| v["order_id"] = json!(17), false),
        (
            "missing customer",
            |v| {
                v.as_object_mut().unwrap().remove("customer_id");
            },
            false,
        ),
        ("blank customer", |v| v["customer_id"] = json!("   "), false),
        ("no items", |v| v["items"] = json!([]), false),
        ("items not an array", |v| v["items"] = json!({}), false),
        (
            "quantity 0",
            |v| v["items"][0]["quantity"] = json!(0),
            false,
        ),
        (
            "quantity 1001",
            |v| v["items"][0]["quantity"] = json!(1001),
            false,
        ),
        (
            "fractional quantity",
            |v| v["items"][0]["quantity"] = json!(1.5),
            false,
        ),
        (
            "negative price",
            |v| v["items"][0]["unit_price"] = json!(-1),
            false,
        ),
        (
            "price above the bound",
            |v| v["items"][0]["unit_price"] = json!(1_000_000_000_001u64),
            false,
        ),
        (
            "extra item field",
            |v| v["items"][0]["colour"] = json!("red"),
            false,
        ),
        (
            "missing sku",
            |v| {
                v["items"][0].as_object_mut().unwrap().remove("sku");
            },
            false,
        ),
        (
            "lower-case currency",
            |v| v["currency"] = json!("usd"),
            false,
        ),
        (
            "four-letter currency",
            |v| v["currency"] = json!("USDT"),
            false,
        ),
        ("empty token", |v| v["payment_token"] = json!(""), false),
        (
            "country name",
            |v| v["shipping_address"]["country"] = json!("USA"),
            false,
        ),
        (
            "missing city",
            |v| {
                v["shipping_address"]
                    .as_object_mut()
                    .unwrap()
                    .remove("city");
            },
            false,
        ),
        (
            "extra address field",
            |v| v["shipping_address"]["floor"] = json!("3"),
            false,
        ),
        (
            "address not an object",
            |v| v["shipping_address"] = json!("1 Navy Way"),
            false,
        ),
        (
            "date without time",
            |v| v["placed_at"] = json!("2026-11-28"),
            false,
        ),
        ("not a date", |v| v["placed_at"] = json!("yesterday"), false),
        (
            "UTC date",
            |v| v["placed_at"] = json!("2026-11-28T10:15:00Z"),
            true,
        ),
        ("bad supersedes", |v| v["supersedes"] = json!("a b"), false),
        ("null supersedes", |v| v["supersedes"] = Value::Null, false),
        (
            "other schema",
            |v| v["schema"] = json!("order.placed/v2"),
            false,
        ),
        ("unknown field", |v| v["priority"] = json!("high"), false),
        ("not an object", |v| *v = json!(["order"]), false),
    ]
}

fn cancel_cases() -> Vec<Case> {
    vec![
        ("as is", |_| {}, true),
        (
            "missing reason",
            |v| {
                v.as_object_mut().unwrap().remove("reason");
            },
            false,
        ),
        ("blank reason", |v| v["reason"] = json!(" "), false),
        (
            "long reason",
            |v| v["reason"] = json!("x".repeat(513)),
            false,
        ),
        ("bad id", |v| v["order_id"] = json!("a/b"), false),
        ("extra field", |v| v["by"] = json!("ops"), false),
    ]
}

fn check(schema_file: &str, base: fn() -> Value, cases: Vec<Case>) {
    let validator = schema(schema_file);
    for (name, edit, valid) in cases {
        let mut doc = base();
        edit(&mut doc);
        let by_schema = validator.is_valid(&doc);
        let by_rust = parse_inbound(doc.to_string().as_bytes());
        assert_eq!(
            by_schema, valid,
            "{schema_file} / {name}: schema says {by_schema}"
        );
        assert_eq!(
            by_rust.is_ok(),
            valid,
            "{schema_file} / {name}: Rust says {by_rust:?}"
        );
    }
}

#[test]
fn order_placed_schema_and_rust_agree() {
    check("order.placed.v1.json", order, order_cases());
}

#[test]
fn order_cancel_schema_and_rust_agree() {
    check("order.cancel.v1.json", cancel, cancel_cases());
}

#[test]
fn self_supersession_is_the_one_rule_only_rust_checks() {
    // Documented in the schema's description: JSON Schema cannot compare fields.
    let mut doc = order();
    doc["supersedes"] = doc["order_id"].clone();
    assert!(schema("order.placed.v1.json").is_valid(&doc));
    let err = parse_inbound(doc.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.problems[0].path, "/supersedes");
}
