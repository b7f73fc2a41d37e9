//! Reading values back from Redis. Anything unreadable is
//! [`Error::Corrupt`] naming the key, never a panic.

use crate::error::Error;
use jiff::Timestamp;
use orderflow_core::OrderState;
use orderflow_core::message::OrderId;

pub(crate) fn parse_num<S: AsRef<str>>(key: &str, raw: Option<S>) -> Result<u64, Error> {
    let raw = raw.as_ref().map(AsRef::as_ref);
    raw.and_then(|raw| raw.parse().ok())
        .ok_or_else(|| Error::corrupt(key, format!("expected a number, got {raw:?}")))
}

pub(crate) fn parse_state<S: AsRef<str>>(key: &str, raw: Option<S>) -> Result<OrderState, Error> {
    raw.ok_or_else(|| Error::corrupt(key, "missing state"))?
        .as_ref()
        .parse()
        .map_err(|err: orderflow_core::state::UnknownState| Error::corrupt(key, err.to_string()))
}

pub(crate) fn parse_order_id(key: &str, raw: &str) -> Result<OrderId, Error> {
    OrderId::parse(raw).ok_or_else(|| Error::corrupt(key, format!("bad order id `{raw}`")))
}

pub(crate) fn timestamp(key: &str, ms: u64) -> Result<Timestamp, Error> {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .ok_or_else(|| Error::corrupt(key, format!("time out of range: {ms} ms")))
}
