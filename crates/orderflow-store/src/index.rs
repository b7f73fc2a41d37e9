//! Orders by state, for operators: one sorted set per state, scored by the
//! time of the order's latest move.
//!
//! The sets span orders, so in Redis Cluster they live in other slots than
//! the orders (each set in the slot of its own name): they cannot be
//! written by an order's script, and each is written by single-key
//! commands only. Each write
//! therefore syncs the index with a separate command right after the
//! order's script (see `Store::transition`). A crash in between leaves the
//! index one step behind, and two near-simultaneous moves of one order can
//! land their index updates out of order; so every sync sets the order's
//! membership as a whole (add to its state, remove from every other one),
//! readers check members against the record, and `reindex_order` repairs
//! one order from its record.

use crate::Store;
use crate::error::Error;
use crate::keys::Keys;
use crate::parse::{parse_num, parse_order_id, parse_state, timestamp};
use jiff::Timestamp;
use orderflow_core::OrderState;
use orderflow_core::message::OrderId;
use std::collections::BTreeMap;

/// One order in a state's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub order_id: OrderId,
    /// When the order entered the state.
    pub updated_at: Timestamp,
}

/// Which index set an order leaves when it is (re)indexed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Leaving {
    /// A new order: it is in no set yet.
    Nothing,
    /// A move: only the state it left holds a stale entry.
    State(OrderState),
    /// Unknown (a repair): clear every other set.
    Unknown,
}

/// The commands that make the order a member of exactly `current`'s set
/// (none if the order is gone). A normal move touches two sets, not twelve.
/// Each is a single-key command: the sets live in slots of their own.
pub(crate) fn sync_cmds(
    keys: &Keys,
    order_id: &OrderId,
    current: Option<(OrderState, u64)>,
    leaving: Leaving,
) -> Vec<redis::Cmd> {
    let mut cmds = Vec::new();
    if let Some((state, at_ms)) = current {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(keys.index(state))
            .arg(at_ms)
            .arg(order_id.as_str());
        cmds.push(zadd);
    }
    let stale = OrderState::ALL.into_iter().filter(|state| {
        Some(*state) != current.map(|(current, _)| current)
            && match leaving {
                Leaving::Nothing => false,
                Leaving::State(left) => *state == left,
                Leaving::Unknown => true,
            }
    });
    for state in stale {
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(keys.index(state)).arg(order_id.as_str());
        cmds.push(zrem);
    }
    cmds
}

/// Where a reading of a state's index got to: its last entry. Pass it to
/// [`Store::orders_in_state_after`] for the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexCursor {
    at_ms: u64,
    order_id: OrderId,
}

/// One page of a state's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPage {
    pub entries: Vec<IndexEntry>,
    /// Where the next page starts; `None` when this one reached the end.
    pub next: Option<IndexCursor>,
}

impl Store {
    /// Adds the order to `state`'s set before the write that puts it there
    /// (see [`Store::create_order`]).
    pub(crate) async fn index_ahead(
        &self,
        order_id: &OrderId,
        state: OrderState,
    ) -> Result<(), Error> {
        // One command, not a pipeline: a refusal (OOM, READONLY) then keeps
        // its code, and the runtime waits it out instead of requeueing.
        let now_ms = u64::try_from(Timestamp::now().as_millisecond()).unwrap_or(0);
        redis::cmd("ZADD")
            .arg(self.keys.index(state))
            .arg(now_ms)
            .arg(order_id.as_str())
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Up to `limit` orders in `state`, longest there first. Entries whose
    /// record says otherwise (a lagging index) are repaired and left out,
    /// so fewer than `limit` may come back while more exist.
    pub async fn orders_in_state(
        &self,
        state: OrderState,
        limit: usize,
    ) -> Result<Vec<IndexEntry>, Error> {
        Ok(self
            .orders_in_state_after(state, None, limit)
            .await?
            .entries)
    }

    /// The page of up to `limit` orders in `state` after `after` (from the
    /// longest there when `None`), in the same order as
    /// [`Store::orders_in_state`]: a reader pages through every order in a
    /// state, however many, and one that stays in it is never skipped.
    pub async fn orders_in_state_after(
        &self,
        state: OrderState,
        after: Option<&IndexCursor>,
        limit: usize,
    ) -> Result<IndexPage, Error> {
        if limit == 0 {
            return Ok(IndexPage {
                entries: Vec::new(),
                next: after.cloned(),
            });
        }
        let key = self.keys.index(state);
        let (after_ms, after_id) = match after {
            Some(cursor) => (cursor.at_ms.to_string(), cursor.order_id.as_str()),
            None => (String::new(), ""),
        };
        let members: Vec<(String, f64)> = self
            .scripts
            .index_page
            .key(&key)
            .arg(after_ms)
            .arg(after_id)
            .arg(limit)
            .invoke_async(&mut self.conn())
            .await?;
        let mut ids = Vec::with_capacity(members.len());
        for (member, _) in &members {
            ids.push(parse_order_id(&key, member)?);
        }
        let next = match (ids.last(), members.last()) {
            (Some(order_id), Some((_, score))) if members.len() == limit => Some(IndexCursor {
                at_ms: *score as u64,
                order_id: order_id.clone(),
            }),
            _ => None,
        };
        if ids.is_empty() {
            return Ok(IndexPage {
                entries: Vec::new(),
                next,
            });
        }
        let reads = ids.iter().map(|id| {
            let mut hget = redis::cmd("HGET");
            hget.arg(self.keys.state(id)).arg("state");
            hget
        });
        let actual: Vec<Option<String>> = self.conn.batch(reads.collect()).await?;
        let mut entries = Vec::with_capacity(ids.len());
        for ((order_id, (_, score)), actual) in ids.into_iter().zip(members).zip(actual) {
            if actual.as_deref() == Some(state.as_str()) {
                entries.push(IndexEntry {
                    updated_at: timestamp(&key, score as u64)?,
                    order_id,
                });
            } else {
                self.reindex_order(&order_id).await?;
            }
        }
        Ok(IndexPage { entries, next })
    }

    /// How many orders each state's index holds. Cheap (one `ZCARD` per
    /// state); may be off by the few entries a crash left behind.
    pub async fn count_by_state(&self) -> Result<BTreeMap<OrderState, u64>, Error> {
        let cards = OrderState::ALL.into_iter().map(|state| {
            let mut zcard = redis::cmd("ZCARD");
            zcard.arg(self.keys.index(state));
            zcard
        });
        let counts: Vec<u64> = self.conn.batch(cards.collect()).await?;
        Ok(OrderState::ALL.into_iter().zip(counts).collect())
    }

    /// How many orders entered `state` before `cutoff` and are still
    /// there by the index (one `ZCOUNT`; may be off like
    /// [`Store::count_by_state`]).
    pub async fn count_in_state_entered_before(
        &self,
        state: OrderState,
        cutoff: Timestamp,
    ) -> Result<u64, Error> {
        let count: u64 = redis::cmd("ZCOUNT")
            .arg(self.keys.index(state))
            .arg("-inf")
            .arg(cutoff.as_millisecond())
            .query_async(&mut self.conn())
            .await?;
        Ok(count)
    }

    /// Makes the index agree with the order's record; returns the state it
    /// was indexed under (`None`: no such order, removed from the index).
    pub async fn reindex_order(&self, order_id: &OrderId) -> Result<Option<OrderState>, Error> {
        let key = self.keys.state(order_id);
        let (state, at_ms): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("state")
            .arg("updated_at_ms")
            .query_async(&mut self.conn())
            .await?;
        let current = match state {
            Some(state) => Some((
                parse_state(&key, Some(&state))?,
                parse_num(&key, at_ms.as_ref())?,
            )),
            None => None,
        };
        self.conn
            .batch::<redis::Value>(sync_cmds(&self.keys, order_id, current, Leaving::Unknown))
            .await?;
        Ok(current.map(|(state, _)| state))
    }
}
