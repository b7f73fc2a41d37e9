//! Message metadata: [`Meta`] and how it maps to AMQP properties and headers.
//!
//! Our headers are named `orderflow-*`, never `x-*`: newer brokers reserve
//! some `x-` names, and a copy must never carry the broker's own `x-death`
//! along (the broker drops a message that dead-letters around a cycle).
//! Reading is lenient: a missing or unreadable header is `None`.

use crate::Error;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use orderflow_core::policy::PolicyId;
use orderflow_core::{Certainty, FailureClass, Stage};
use std::collections::BTreeMap;

/// The content type of every orderflow message.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

pub const STAGE: &str = "orderflow-stage";
pub const ATTEMPT: &str = "orderflow-attempt";
pub const FIRST_ATTEMPT_AT: &str = "orderflow-first-attempt-at";
pub const CLASS: &str = "orderflow-class";
pub const CERTAINTY: &str = "orderflow-certainty";
pub const REASON: &str = "orderflow-reason";
pub const POLICY_ID: &str = "orderflow-policy-id";
pub const LAST_ERROR: &str = "orderflow-last-error";
pub const ORDER_ID: &str = "orderflow-order-id";
pub const ORDER_VERSION: &str = "orderflow-order-version";

/// The prefix every header in [`Meta::extra`] must carry.
pub const PREFIX: &str = "orderflow-";

const TYPED: [&str; 10] = [
    STAGE,
    ATTEMPT,
    FIRST_ATTEMPT_AT,
    CLASS,
    CERTAINTY,
    REASON,
    POLICY_ID,
    LAST_ERROR,
    ORDER_ID,
    ORDER_VERSION,
];

/// What travels with a message besides its body.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Meta {
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    /// `application/json` when published with `None`.
    pub content_type: Option<String>,
    /// Unix seconds.
    pub timestamp: Option<u64>,
    pub stage: Option<Stage>,
    /// Our own attempt count: the broker's counts reset on every copy.
    pub attempt: Option<u32>,
    /// Epoch milliseconds of the first attempt at this stage.
    pub first_attempt_at: Option<i64>,
    pub class: Option<FailureClass>,
    pub certainty: Option<Certainty>,
    pub reason: Option<String>,
    pub policy_id: Option<String>,
    pub last_error: Option<String>,
    pub order_id: Option<String>,
    /// The order's version in the store once the message was due: a stage
    /// that finds its order at an older version knows the store lost
    /// writes it had acknowledged.
    pub order_version: Option<u64>,
    /// Further `orderflow-*` headers (`orderflow-validation-errors`,
    /// `orderflow-replay-id`, ...), by full header name.
    pub extra: BTreeMap<String, String>,
}

impl Meta {
    pub fn with_policy_id(mut self, id: &PolicyId) -> Meta {
        self.policy_id = Some(id.as_str().to_owned());
        self
    }

    /// Adds an `orderflow-*` header; the prefix is added when missing.
    pub fn with_extra(mut self, name: &str, value: impl Into<String>) -> Meta {
        let name = if name.starts_with(PREFIX) {
            name.to_owned()
        } else {
            format!("{PREFIX}{name}")
        };
        self.extra.insert(name, value.into());
        self
    }

    /// The AMQP properties of a persistent message carrying this metadata.
    pub(crate) fn to_properties(&self) -> Result<BasicProperties, Error> {
        let mut headers = FieldTable::default();
        let mut text = |name: &str, value: &Option<String>| {
            if let Some(value) = value {
                headers.insert(name.into(), long_string(value));
            }
        };
        text(STAGE, &self.stage.map(|s| s.as_str().to_owned()));
        text(CLASS, &self.class.map(|c| c.as_str().to_owned()));
        text(CERTAINTY, &self.certainty.map(|c| c.as_str().to_owned()));
        text(REASON, &self.reason);
        text(POLICY_ID, &self.policy_id);
        text(LAST_ERROR, &self.last_error);
        text(ORDER_ID, &self.order_id);
        // RabbitMQ's field tables have no unsigned 32-bit type: use i64.
        if let Some(attempt) = self.attempt {
            headers.insert(ATTEMPT.into(), AMQPValue::LongLongInt(i64::from(attempt)));
        }
        if let Some(at) = self.first_attempt_at {
            headers.insert(FIRST_ATTEMPT_AT.into(), AMQPValue::LongLongInt(at));
        }
        if let Some(version) = self.order_version.and_then(|v| i64::try_from(v).ok()) {
            headers.insert(ORDER_VERSION.into(), AMQPValue::LongLongInt(version));
        }
        for (name, value) in &self.extra {
            if !name.starts_with(PREFIX) || TYPED.contains(&name.as_str()) {
                return Err(Error::Invalid {
                    what: format!("header `{name}`"),
                    reason: format!(
                        "is not a free-form header: extra headers must start with `{PREFIX}` and not be one of the typed ones"
                    ),
                });
            }
            headers.insert(short_string("header name", name)?, long_string(value));
        }

        let mut properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type(short_string(
                "content type",
                self.content_type.as_deref().unwrap_or(CONTENT_TYPE_JSON),
            )?)
            .with_headers(headers);
        if let Some(id) = &self.message_id {
            properties = properties.with_message_id(short_string("message id", id)?);
        }
        if let Some(id) = &self.correlation_id {
            properties = properties.with_correlation_id(short_string("correlation id", id)?);
        }
        if let Some(timestamp) = self.timestamp {
            properties = properties.with_timestamp(timestamp);
        }
        Ok(properties)
    }

    /// Reads the metadata back; anything missing or unreadable is `None`.
    pub(crate) fn from_properties(properties: &BasicProperties) -> Meta {
        let empty = FieldTable::default();
        let headers = properties.headers().as_ref().unwrap_or(&empty);
        let text = |name: &str| headers.inner().get(name).and_then(as_text);
        let extra = headers
            .inner()
            .iter()
            .filter(|(name, _)| {
                name.as_str().starts_with(PREFIX) && !TYPED.contains(&name.as_str())
            })
            .filter_map(|(name, value)| Some((name.to_string(), as_text(value)?)))
            .collect();
        Meta {
            message_id: properties.message_id().as_ref().map(ToString::to_string),
            correlation_id: properties
                .correlation_id()
                .as_ref()
                .map(ToString::to_string),
            content_type: properties.content_type().as_ref().map(ToString::to_string),
            timestamp: *properties.timestamp(),
            stage: text(STAGE).and_then(|s| s.parse().ok()),
            attempt: headers
                .inner()
                .get(ATTEMPT)
                .and_then(as_int)
                .and_then(|n| u32::try_from(n).ok()),
            first_attempt_at: headers.inner().get(FIRST_ATTEMPT_AT).and_then(as_int),
            class: text(CLASS).and_then(|s| s.parse().ok()),
            certainty: text(CERTAINTY).and_then(|s| s.parse().ok()),
            reason: text(REASON),
            policy_id: text(POLICY_ID),
            last_error: text(LAST_ERROR),
            order_id: text(ORDER_ID),
            order_version: headers
                .inner()
                .get(ORDER_VERSION)
                .and_then(as_int)
                .and_then(|n| u64::try_from(n).ok()),
            extra,
        }
    }
}

/// One entry of the broker's `x-death` header: why and how often the
/// message was dead-lettered from one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    pub queue: String,
    /// `rejected`, `expired`, `maxlen` or `delivery_limit`.
    pub reason: String,
    pub count: u64,
    pub exchange: String,
    pub routing_keys: Vec<String>,
}

/// The `x-death` entries, most recent first (the broker keeps the latest at
/// the head; `x-first-death-*` would tell the first one instead).
pub(crate) fn deaths(properties: &BasicProperties) -> Vec<Death> {
    let Some(AMQPValue::FieldArray(entries)) = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-death"))
    else {
        return Vec::new();
    };
    entries
        .as_slice()
        .iter()
        .filter_map(|entry| {
            let AMQPValue::FieldTable(table) = entry else {
                return None;
            };
            let field = |name: &str| table.inner().get(name);
            Some(Death {
                queue: field("queue").and_then(as_text).unwrap_or_default(),
                reason: field("reason").and_then(as_text).unwrap_or_default(),
                count: field("count")
                    .and_then(as_int)
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
                exchange: field("exchange").and_then(as_text).unwrap_or_default(),
                routing_keys: match field("routing-keys") {
                    Some(AMQPValue::FieldArray(keys)) => {
                        keys.as_slice().iter().filter_map(as_text).collect()
                    }
                    _ => Vec::new(),
                },
            })
        })
        .collect()
}

/// The quorum queue's `x-delivery-count`: earlier unsuccessful deliveries.
pub(crate) fn delivery_count(properties: &BasicProperties) -> Option<u64> {
    properties
        .headers()
        .as_ref()?
        .inner()
        .get("x-delivery-count")
        .and_then(as_int)
        .and_then(|n| u64::try_from(n).ok())
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

pub(crate) fn short_string(what: &str, value: &str) -> Result<ShortString, Error> {
    ShortString::try_new(value).map_err(|_| Error::Invalid {
        what: format!("{what} `{}…`", value.chars().take(40).collect::<String>()),
        reason: format!("is {} bytes long; AMQP allows at most 255", value.len()),
    })
}

fn as_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok().map(str::to_owned),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Any integer type: other tools and brokers pick their own widths.
pub(crate) fn as_int(value: &AMQPValue) -> Option<i64> {
    match *value {
        AMQPValue::ShortShortInt(n) => Some(n.into()),
        AMQPValue::ShortShortUInt(n) => Some(n.into()),
        AMQPValue::ShortInt(n) => Some(n.into()),
        AMQPValue::ShortUInt(n) => Some(n.into()),
        AMQPValue::LongInt(n) => Some(n.into()),
        AMQPValue::LongUInt(n) => Some(n.into()),
        AMQPValue::LongLongInt(n) => Some(n),
        AMQPValue::Timestamp(n) => i64::try_from(n).ok(),
        AMQPValue::LongString(ref s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldArray;

    fn full() -> Meta {
        Meta {
            message_id: Some("m-1".into()),
            correlation_id: Some("c-1".into()),
            content_type: None,
            timestamp: Some(1_700_000_000),
            stage: Some(Stage::Payment),
            attempt: Some(3),
            first_attempt_at: Some(1_700_000_000_123),
            class: Some(FailureClass::Timeout),
            certainty: Some(Certainty::Unknown),
            reason: Some("payment_pending".into()),
            policy_id: Some("pol-0123456789ab".into()),
            last_error: Some("504 from payment".into()),
            order_id: Some("ord-1".into()),
            order_version: Some(4),
            extra: BTreeMap::new(),
        }
        .with_extra("replay-id", "r-9")
    }

    #[test]
    fn meta_round_trips_through_properties() {
        let meta = full();
        let properties = meta.to_properties().unwrap();
        assert_eq!(*properties.delivery_mode(), Some(PERSISTENT));
        assert_eq!(
            properties.content_type().as_ref().map(|s| s.as_str()),
            Some(CONTENT_TYPE_JSON)
        );
        let back = Meta::from_properties(&properties);
        assert_eq!(
            back,
            Meta {
                content_type: Some(CONTENT_TYPE_JSON.into()),
                ..meta
            }
        );
        assert_eq!(back.extra["orderflow-replay-id"], "r-9");
    }

    #[test]
    fn missing_and_unreadable_headers_are_none() {
        let mut headers = FieldTable::default();
        headers.insert(STAGE.into(), long_string("warehouse"));
        headers.insert(ATTEMPT.into(), AMQPValue::LongLongInt(-1));
        headers.insert(CLASS.into(), AMQPValue::Boolean(true));
        headers.insert("x-other".into(), long_string("ignored"));
        let meta = Meta::from_properties(&BasicProperties::default().with_headers(headers));
        assert_eq!(meta, Meta::default());
        assert_eq!(
            Meta::from_properties(&BasicProperties::default()),
            Meta::default()
        );
    }

    #[test]
    fn integers_of_any_width_are_read() {
        let mut headers = FieldTable::default();
        headers.insert(ATTEMPT.into(), AMQPValue::ShortShortUInt(4));
        headers.insert(FIRST_ATTEMPT_AT.into(), long_string("1700000000000"));
        let meta = Meta::from_properties(&BasicProperties::default().with_headers(headers));
        assert_eq!(meta.attempt, Some(4));
        assert_eq!(meta.first_attempt_at, Some(1_700_000_000_000));
    }

    #[test]
    fn extra_headers_must_be_ours_and_not_shadow_typed_ones() {
        let mut meta = Meta::default();
        meta.extra.insert("x-death".into(), "forged".into());
        assert!(meta.to_properties().is_err());
        let mut meta = Meta::default();
        meta.extra.insert(ATTEMPT.into(), "7".into());
        assert!(meta.to_properties().is_err());
        assert!(
            Meta::default()
                .with_extra("orderflow-validation-errors", "[]")
                .to_properties()
                .is_ok()
        );
    }

    #[test]
    fn overlong_ids_are_refused_not_a_panic() {
        let meta = Meta {
            message_id: Some("m".repeat(300)),
            ..Meta::default()
        };
        let err = meta.to_properties().unwrap_err().to_string();
        assert!(err.contains("message id") && err.contains("255"), "{err}");
    }

    #[test]
    fn the_latest_death_comes_first() {
        let entry = |queue: &str, reason: &str, count: i64| {
            let mut t = FieldTable::default();
            t.insert("queue".into(), long_string(queue));
            t.insert("reason".into(), long_string(reason));
            t.insert("count".into(), AMQPValue::LongLongInt(count));
            t.insert("exchange".into(), long_string(""));
            t.insert(
                "routing-keys".into(),
                AMQPValue::FieldArray(FieldArray::from(vec![long_string(queue)])),
            );
            AMQPValue::FieldTable(t)
        };
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                entry("ns.payment", "delivery_limit", 1),
                entry("ns.payment.delay.2s", "expired", 3),
            ])),
        );
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(5));
        let properties = BasicProperties::default().with_headers(headers);
        let deaths = deaths(&properties);
        assert_eq!(deaths.len(), 2);
        assert_eq!(deaths[0].reason, "delivery_limit");
        assert_eq!(deaths[0].queue, "ns.payment");
        assert_eq!(deaths[0].routing_keys, vec!["ns.payment".to_owned()]);
        assert_eq!(deaths[1].count, 3);
        assert_eq!(delivery_count(&properties), Some(5));
        assert!(super::deaths(&BasicProperties::default()).is_empty());
    }
}
