//! Audit streams.
//!
//! Each order has its own stream (`…:order:{id}:audit`), written by the same
//! script that changes the order: it is the record, complete by
//! construction, and never trimmed. The fleet-wide stream (`{ns}:audit`) is
//! for operators following the whole fleet. It cannot be written by the
//! order's script, because in Redis Cluster it lives in another slot than
//! the order; so the store copies each entry there with a separate `XADD`
//! right after the script. A crash between the two loses that copy: the
//! fleet stream is an index that can miss an entry, and it is capped
//! (`MAXLEN ~`); the per-order stream is what an audit relies on. Both carry
//! the order id and version, so the two can be matched.

use crate::Store;
use crate::error::Error;
use crate::keys::Keys;
use crate::parse::{parse_num, parse_order_id, parse_state};
use jiff::Timestamp;
use orderflow_core::OrderState;
use orderflow_core::message::OrderId;
use std::collections::HashMap;

/// One audited change (or note) of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The entry's id in the stream it was read from; pass the last one as
    /// `since` to [`Store::fleet_audit`] to read on.
    pub id: String,
    pub order_id: OrderId,
    /// Server time of the change.
    pub at: Timestamp,
    /// The order's version after the change (a note leaves it unchanged).
    pub version: u64,
    pub actor: String,
    /// `None` for the order's creation.
    pub from: Option<OrderState>,
    /// Equal to `from` for a note.
    pub to: OrderState,
    pub event: String,
    pub reason: Option<String>,
    pub rule: Option<String>,
    pub correlation_id: String,
    pub policy_id: String,
}

/// The fleet-wide copy of an entry the order's script just wrote.
pub(crate) fn fleet_copy(keys: &Keys, maxlen: u64, fields: &[(String, String)]) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(keys.fleet_audit())
        .arg("MAXLEN")
        .arg("~")
        .arg(maxlen)
        .arg("*");
    for (field, value) in fields {
        cmd.arg(field).arg(value);
    }
    cmd
}

pub(crate) type RawEntry = (String, HashMap<String, String>);

impl Store {
    /// Every audit entry of the order, oldest first.
    pub async fn order_audit(&self, order_id: &OrderId) -> Result<Vec<AuditEntry>, Error> {
        let key = self.keys.audit(order_id);
        let raw: Vec<RawEntry> = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query_async(&mut self.conn())
            .await?;
        raw.into_iter()
            .map(|entry| parse_entry(&key, entry))
            .collect()
    }

    /// Up to `count` fleet-wide entries after the entry id `since` (from the
    /// oldest kept when `None`), oldest first.
    pub async fn fleet_audit(
        &self,
        since: Option<&str>,
        count: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        let start = match since {
            Some(id) if is_stream_id(id) => format!("({id}"),
            Some(id) => {
                return Err(Error::InvalidArgument(format!(
                    "`{id}` is not a stream entry id (ms-seq)"
                )));
            }
            None => "-".to_owned(),
        };
        let key = self.keys.fleet_audit();
        let raw: Vec<RawEntry> = redis::cmd("XRANGE")
            .arg(&key)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn())
            .await?;
        raw.into_iter()
            .map(|entry| parse_entry(&key, entry))
            .collect()
    }
}

fn is_stream_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(ms, seq)| {
        [ms, seq]
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
    })
}

pub(crate) fn parse_entry(key: &str, (id, fields): RawEntry) -> Result<AuditEntry, Error> {
    let get = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| Error::corrupt(key, format!("entry {id} has no `{name}`")))
    };
    let optional = |name: &str| get(name).map(|v| Some(v.clone()).filter(|v| !v.is_empty()));
    let order_id = parse_order_id(key, get("order_id")?)?;
    let at = get("at")?
        .parse()
        .map_err(|err| Error::corrupt(key, format!("entry {id}: at: {err}")))?;
    let from = match get("from")?.as_str() {
        "" => None,
        from => Some(parse_state(key, Some(from))?),
    };
    Ok(AuditEntry {
        order_id,
        at,
        version: parse_num(key, fields.get("version"))?,
        actor: get("actor")?.clone(),
        from,
        to: parse_state(key, fields.get("to"))?,
        event: get("event")?.clone(),
        reason: optional("reason")?,
        rule: optional("rule")?,
        correlation_id: get("correlation_id")?.clone(),
        policy_id: get("policy_id")?.clone(),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::is_stream_id;

    #[test]
    fn only_stream_ids_pass_as_cursors() {
        assert!(is_stream_id("1700000000000-0"));
        assert!(!is_stream_id("1700000000000"));
        assert!(!is_stream_id("-"));
        assert!(!is_stream_id("12-x"));
        assert!(!is_stream_id("(12-0"));
    }
}
