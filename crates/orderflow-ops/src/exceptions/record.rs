//! The line format of `exceptions export` and `import`: one message per
//! JSON line, body and every AMQP property and header kept exactly.
//!
//! ```json
//! {"format":"orderflow.exception/v1","stage":"payment","id":"ord-1.payment.v4.0",
//!  "body_sha256":"9f2c…","body":"{\"schema\":\"orderflow.step/v1\",…}",
//!  "properties":{"content_type":"application/json","delivery_mode":2,
//!    "message_id":"ord-1.payment.v4.0","timestamp":1764325000,
//!    "headers":{"orderflow-attempt":{"i64":3},
//!               "orderflow-reason":{"long_string":"payment_unresolved"}}}}
//! ```
//!
//! - The body is `body`, a JSON string, when its bytes are UTF-8 (a JSON
//!   string holds any UTF-8 exactly), otherwise `body_base64` (standard
//!   alphabet, padded). Exactly one of the two is present.
//! - Every header value names its AMQP type (`long_string`, `i64`,
//!   `timestamp`, `table`, `array`, …), so it is published back with the
//!   same type. A long string that is not UTF-8 is `{"base64": "…"}`;
//!   floats are their IEEE 754 bits (`f32_bits`, `f64_bits`), so NaN and
//!   infinities survive JSON.
//! - `id` and `body_sha256` identify the message: a rerun of an export
//!   acknowledges, without writing it again, a message whose id and body
//!   are already in the file.

use super::message::sha256_hex;
use crate::Error;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use orderflow_broker::admin::{FieldValue, RawProperties};
use orderflow_core::Stage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `format` of every line.
pub const RECORD_FORMAT: &str = "orderflow.exception/v1";

/// One exported message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub format: String,
    /// The stage whose exception queue it came from (and goes back to).
    pub stage: Stage,
    /// The message id, or `body-<hash>` for a message without one.
    pub id: String,
    pub body_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    pub properties: Properties,
}

/// What identifies a message across an export and its rerun.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub stage: Stage,
    pub id: String,
    pub body_sha256: String,
}

impl Record {
    pub fn new(stage: Stage, id: &str, body: &[u8], properties: &RawProperties) -> Record {
        let (text, base64) = match std::str::from_utf8(body) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(STANDARD.encode(body))),
        };
        Record {
            format: RECORD_FORMAT.to_owned(),
            stage,
            id: id.to_owned(),
            body_sha256: sha256_hex(body),
            body: text,
            body_base64: base64,
            properties: Properties::from_raw(properties),
        }
    }

    /// Parses and checks one line: the format, exactly one body, and the
    /// body's hash.
    pub fn parse(line: &str) -> Result<Record, String> {
        let record: Record = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if record.format != RECORD_FORMAT {
            return Err(format!(
                "format is `{}`, expected `{RECORD_FORMAT}`",
                record.format
            ));
        }
        let body = record.body_bytes()?;
        if sha256_hex(&body) != record.body_sha256 {
            return Err("the body does not match its body_sha256".to_owned());
        }
        record.properties.to_raw()?;
        Ok(record)
    }

    /// The line, without its newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a record always serializes")
    }

    pub fn body_bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.body, &self.body_base64) {
            (Some(text), None) => Ok(text.as_bytes().to_vec()),
            (None, Some(encoded)) => STANDARD
                .decode(encoded)
                .map_err(|e| format!("body_base64: {e}")),
            _ => Err("needs exactly one of `body` and `body_base64`".to_owned()),
        }
    }

    pub fn raw_properties(&self) -> Result<RawProperties, Error> {
        self.properties.to_raw().map_err(Error::Invalid)
    }

    pub fn identity(&self) -> Identity {
        Identity {
            stage: self.stage,
            id: self.id.clone(),
            body_sha256: self.body_sha256.clone(),
        }
    }
}

/// Every AMQP basic property; absent ones are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Properties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_mode: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// The AMQP `type` property.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

impl Properties {
    fn from_raw(raw: &RawProperties) -> Properties {
        Properties {
            content_type: raw.content_type.clone(),
            content_encoding: raw.content_encoding.clone(),
            headers: raw.headers.as_ref().map(|h| {
                h.iter()
                    .map(|(name, value)| (name.clone(), Value::from_field(value)))
                    .collect()
            }),
            delivery_mode: raw.delivery_mode,
            priority: raw.priority,
            correlation_id: raw.correlation_id.clone(),
            reply_to: raw.reply_to.clone(),
            expiration: raw.expiration.clone(),
            message_id: raw.message_id.clone(),
            timestamp: raw.timestamp,
            kind: raw.kind.clone(),
            user_id: raw.user_id.clone(),
            app_id: raw.app_id.clone(),
            cluster_id: raw.cluster_id.clone(),
        }
    }

    fn to_raw(&self) -> Result<RawProperties, String> {
        let headers = match &self.headers {
            Some(headers) => Some(
                headers
                    .iter()
                    .map(|(name, value)| {
                        value
                            .to_field()
                            .map(|v| (name.clone(), v))
                            .map_err(|e| format!("header `{name}`: {e}"))
                    })
                    .collect::<Result<BTreeMap<_, _>, _>>()?,
            ),
            None => None,
        };
        Ok(RawProperties {
            content_type: self.content_type.clone(),
            content_encoding: self.content_encoding.clone(),
            headers,
            delivery_mode: self.delivery_mode,
            priority: self.priority,
            correlation_id: self.correlation_id.clone(),
            reply_to: self.reply_to.clone(),
            expiration: self.expiration.clone(),
            message_id: self.message_id.clone(),
            timestamp: self.timestamp,
            kind: self.kind.clone(),
            user_id: self.user_id.clone(),
            app_id: self.app_id.clone(),
            cluster_id: self.cluster_id.clone(),
        })
    }
}

/// A header value with its AMQP type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Value {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    F32Bits(u32),
    F64Bits(u64),
    Decimal {
        scale: u8,
        value: u32,
    },
    ShortString(String),
    LongString(Text),
    Array(Vec<Value>),
    /// Seconds since the Unix epoch.
    Timestamp(u64),
    Table(BTreeMap<String, Value>),
    /// Base64.
    ByteArray(String),
    Void,
}

/// Bytes that are usually text: a string when UTF-8, else base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Text {
    Utf8(String),
    Binary { base64: String },
}

impl Text {
    fn from_bytes(bytes: &[u8]) -> Text {
        match std::str::from_utf8(bytes) {
            Ok(text) => Text::Utf8(text.to_owned()),
            Err(_) => Text::Binary {
                base64: STANDARD.encode(bytes),
            },
        }
    }

    fn to_bytes(&self) -> Result<Vec<u8>, String> {
        match self {
            Text::Utf8(text) => Ok(text.as_bytes().to_vec()),
            Text::Binary { base64 } => STANDARD.decode(base64).map_err(|e| e.to_string()),
        }
    }
}

impl Value {
    fn from_field(value: &FieldValue) -> Value {
        match value {
            FieldValue::Bool(v) => Value::Bool(*v),
            FieldValue::I8(v) => Value::I8(*v),
            FieldValue::U8(v) => Value::U8(*v),
            FieldValue::I16(v) => Value::I16(*v),
            FieldValue::U16(v) => Value::U16(*v),
            FieldValue::I32(v) => Value::I32(*v),
            FieldValue::U32(v) => Value::U32(*v),
            FieldValue::I64(v) => Value::I64(*v),
            FieldValue::F32(v) => Value::F32Bits(v.to_bits()),
            FieldValue::F64(v) => Value::F64Bits(v.to_bits()),
            FieldValue::Decimal { scale, value } => Value::Decimal {
                scale: *scale,
                value: *value,
            },
            FieldValue::ShortString(s) => Value::ShortString(s.clone()),
            FieldValue::LongString(b) => Value::LongString(Text::from_bytes(b)),
            FieldValue::Array(a) => Value::Array(a.iter().map(Value::from_field).collect()),
            FieldValue::Timestamp(t) => Value::Timestamp(*t),
            FieldValue::Table(t) => Value::Table(
                t.iter()
                    .map(|(k, v)| (k.clone(), Value::from_field(v)))
                    .collect(),
            ),
            FieldValue::Bytes(b) => Value::ByteArray(STANDARD.encode(b)),
            FieldValue::Void => Value::Void,
        }
    }

    fn to_field(&self) -> Result<FieldValue, String> {
        Ok(match self {
            Value::Bool(v) => FieldValue::Bool(*v),
            Value::I8(v) => FieldValue::I8(*v),
            Value::U8(v) => FieldValue::U8(*v),
            Value::I16(v) => FieldValue::I16(*v),
            Value::U16(v) => FieldValue::U16(*v),
            Value::I32(v) => FieldValue::I32(*v),
            Value::U32(v) => FieldValue::U32(*v),
            Value::I64(v) => FieldValue::I64(*v),
            Value::F32Bits(v) => FieldValue::F32(f32::from_bits(*v)),
            Value::F64Bits(v) => FieldValue::F64(f64::from_bits(*v)),
            Value::Decimal { scale, value } => FieldValue::Decimal {
                scale: *scale,
                value: *value,
            },
            Value::ShortString(s) => FieldValue::ShortString(s.clone()),
            Value::LongString(t) => FieldValue::LongString(t.to_bytes()?),
            Value::Array(a) => {
                FieldValue::Array(a.iter().map(Value::to_field).collect::<Result<_, _>>()?)
            }
            Value::Timestamp(t) => FieldValue::Timestamp(*t),
            Value::Table(t) => FieldValue::Table(
                t.iter()
                    .map(|(k, v)| v.to_field().map(|v| (k.clone(), v)))
                    .collect::<Result<_, _>>()?,
            ),
            Value::ByteArray(b) => {
                FieldValue::Bytes(STANDARD.decode(b).map_err(|e| e.to_string())?)
            }
            Value::Void => FieldValue::Void,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawProperties {
        let mut inner = BTreeMap::new();
        inner.insert("count".to_owned(), FieldValue::I64(2));
        inner.insert("queue".to_owned(), FieldValue::LongString(b"q".to_vec()));
        let mut headers = BTreeMap::new();
        headers.insert(
            "orderflow-reason".to_owned(),
            FieldValue::LongString(b"payment_unresolved".to_vec()),
        );
        headers.insert(
            "binary".to_owned(),
            FieldValue::LongString(vec![0xff, 0x00, 0x80]),
        );
        headers.insert("nan".to_owned(), FieldValue::F64(f64::NAN));
        headers.insert("f".to_owned(), FieldValue::F32(1.5));
        headers.insert(
            "x-death".to_owned(),
            FieldValue::Array(vec![FieldValue::Table(inner)]),
        );
        headers.insert("t".to_owned(), FieldValue::Timestamp(1_700_000_000));
        headers.insert("v".to_owned(), FieldValue::Void);
        headers.insert(
            "d".to_owned(),
            FieldValue::Decimal {
                scale: 2,
                value: 1234,
            },
        );
        headers.insert("bytes".to_owned(), FieldValue::Bytes(vec![1, 2, 3]));
        RawProperties {
            content_type: Some("application/json".into()),
            headers: Some(headers),
            delivery_mode: Some(2),
            priority: Some(4),
            message_id: Some("m-1".into()),
            timestamp: Some(1_700_000_000),
            kind: Some("t".into()),
            app_id: Some("producer".into()),
            ..RawProperties::default()
        }
    }

    /// NaN is not equal to itself: compare the lines instead.
    #[test]
    fn a_record_round_trips_through_its_line_exactly() {
        for body in [&b"{\"schema\":\"x\"}"[..], &[0xc3, 0x28, 0x00][..]] {
            let record = Record::new(Stage::Payment, "m-1", body, &raw());
            let line = record.to_line();
            let back = Record::parse(&line).unwrap();
            assert_eq!(back.body_bytes().unwrap(), body);
            let again = Record::new(
                Stage::Payment,
                "m-1",
                &back.body_bytes().unwrap(),
                &back.raw_properties().unwrap(),
            );
            assert_eq!(again.to_line(), line);
        }
    }

    #[test]
    fn text_bodies_stay_readable_and_binary_ones_are_base64() {
        let text = Record::new(Stage::Inventory, "a", b"{\"a\":1}", &raw());
        assert_eq!(text.body.as_deref(), Some("{\"a\":1}"));
        assert!(text.body_base64.is_none());
        let line = text.to_line();
        assert!(
            line.contains(r#""orderflow-reason":{"long_string":"payment_unresolved"}"#),
            "{line}"
        );
        assert!(
            line.contains(r#""binary":{"long_string":{"base64":"/wCA"}}"#),
            "{line}"
        );
        let binary = Record::new(Stage::Inventory, "a", &[0xff], &raw());
        assert_eq!(binary.body_base64.as_deref(), Some("/w=="));
    }

    #[test]
    fn a_tampered_or_foreign_line_is_refused() {
        let mut record = Record::new(Stage::Inventory, "a", b"{}", &RawProperties::default());
        record.body = Some("{\"changed\":1}".into());
        assert!(
            Record::parse(&record.to_line())
                .unwrap_err()
                .contains("body_sha256")
        );
        assert!(Record::parse(r#"{"format":"other"}"#).is_err());
        let mut both = Record::new(Stage::Inventory, "a", b"{}", &RawProperties::default());
        both.body_base64 = Some("e30=".into());
        assert!(
            Record::parse(&both.to_line())
                .unwrap_err()
                .contains("exactly one")
        );
    }
}
