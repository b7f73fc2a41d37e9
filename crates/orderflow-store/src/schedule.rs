//! Schedules: one sorted set per kind, member = order id, score = due time
//! in ms of the server's clock.
//!
//! Several reconciler replicas share a schedule through [`Store::claim_due`]:
//! one script picks the due members and pushes their due time forward by a
//! visibility window, so no two replicas hold the same order at once, and a
//! replica that dies only delays its orders by that window.

use crate::Store;
use crate::error::Error;
use crate::parse::{parse_num, parse_order_id};
use orderflow_core::message::OrderId;
use std::time::Duration;

/// What a schedule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScheduleKind {
    /// Re-check a payment whose outcome is unknown.
    PendingPayment,
    /// Poll an accepted shipment towards delivery.
    ShipmentTracking,
    /// Look at an order that stayed too long in one state.
    Stuck,
    /// Report a cancellation kept for an order that has not arrived.
    EarlyCancel,
    /// Archive a finished order past its retention and remove its keys.
    Archive,
}

impl ScheduleKind {
    pub const ALL: [ScheduleKind; 5] = [
        ScheduleKind::PendingPayment,
        ScheduleKind::ShipmentTracking,
        ScheduleKind::Stuck,
        ScheduleKind::EarlyCancel,
        ScheduleKind::Archive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleKind::PendingPayment => "pending_payment",
            ScheduleKind::ShipmentTracking => "shipment_tracking",
            ScheduleKind::Stuck => "stuck",
            ScheduleKind::EarlyCancel => "early_cancel",
            ScheduleKind::Archive => "archive",
        }
    }
}

/// A due order taken by [`Store::claim_due`]; no other claimer gets it
/// before `claimed_until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub kind: ScheduleKind,
    pub order_id: OrderId,
    /// When it was due.
    pub due_at_ms: u64,
    /// When it comes due again unless finished or rescheduled.
    pub claimed_until_ms: u64,
}

fn millis(what: &str, duration: Duration) -> Result<u64, Error> {
    u64::try_from(duration.as_millis())
        .map_err(|_| Error::InvalidArgument(format!("{what} {duration:?} is too long")))
}

impl Store {
    /// Schedules the order at `due_at_ms` (server clock, see
    /// [`Store::server_time_ms`]), replacing an earlier due time.
    pub async fn schedule(
        &self,
        kind: ScheduleKind,
        order_id: &OrderId,
        due_at_ms: u64,
    ) -> Result<(), Error> {
        redis::cmd("ZADD")
            .arg(self.keys.schedule(kind))
            .arg(due_at_ms)
            .arg(order_id.as_str())
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Schedules each order at `due_at_ms` unless it is scheduled already
    /// (a claimed entry keeps its claim), in one command; returns how many
    /// were added.
    pub async fn schedule_if_absent(
        &self,
        kind: ScheduleKind,
        order_ids: &[&OrderId],
        due_at_ms: u64,
    ) -> Result<u64, Error> {
        if order_ids.is_empty() {
            return Ok(0);
        }
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(self.keys.schedule(kind)).arg("NX");
        for id in order_ids {
            zadd.arg(due_at_ms).arg(id.as_str());
        }
        let added: u64 = zadd.query_async(&mut self.conn()).await?;
        Ok(added)
    }

    /// Schedules the order `delay` after the server's now; returns the due
    /// time.
    pub async fn schedule_in(
        &self,
        kind: ScheduleKind,
        order_id: &OrderId,
        delay: Duration,
    ) -> Result<u64, Error> {
        let due: String = self
            .scripts
            .schedule_in
            .key(self.keys.schedule(kind))
            .arg(order_id.as_str())
            .arg(millis("delay", delay)?)
            .invoke_async(&mut self.conn())
            .await?;
        parse_num(&self.keys.schedule(kind), Some(&due))
    }

    /// The order's due time, if scheduled.
    pub async fn scheduled_at(
        &self,
        kind: ScheduleKind,
        order_id: &OrderId,
    ) -> Result<Option<u64>, Error> {
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(self.keys.schedule(kind))
            .arg(order_id.as_str())
            .query_async(&mut self.conn())
            .await?;
        Ok(score.map(|score| score as u64))
    }

    /// Up to `limit` orders due at `now_ms`, earliest first, without
    /// claiming them (for inspection; replicas use [`Store::claim_due`]).
    pub async fn due(
        &self,
        kind: ScheduleKind,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<OrderId>, Error> {
        let key = self.keys.schedule(kind);
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn())
            .await?;
        members
            .iter()
            .map(|member| parse_order_id(&key, member))
            .collect()
    }

    /// How many orders the schedule holds.
    pub async fn scheduled_count(&self, kind: ScheduleKind) -> Result<u64, Error> {
        Ok(redis::cmd("ZCARD")
            .arg(self.keys.schedule(kind))
            .query_async(&mut self.conn())
            .await?)
    }

    /// Removes the order from the schedule; `false` if it was not there.
    pub async fn unschedule(&self, kind: ScheduleKind, order_id: &OrderId) -> Result<bool, Error> {
        let removed: u64 = redis::cmd("ZREM")
            .arg(self.keys.schedule(kind))
            .arg(order_id.as_str())
            .query_async(&mut self.conn())
            .await?;
        Ok(removed == 1)
    }

    /// Takes up to `limit` orders due now (server clock), earliest first,
    /// and hides them from other claimers for `visibility`. Finish each
    /// with [`Store::finish_claim`] or reschedule it; one left alone comes
    /// due again when `visibility` ends.
    pub async fn claim_due(
        &self,
        kind: ScheduleKind,
        limit: usize,
        visibility: Duration,
    ) -> Result<Vec<Claim>, Error> {
        let key = self.keys.schedule(kind);
        let reply: Vec<String> = self
            .scripts
            .claim_due
            .key(&key)
            .arg(limit)
            .arg(millis("visibility", visibility)?)
            .invoke_async(&mut self.conn())
            .await?;
        let mut reply = reply.into_iter();
        let claimed_until_ms = parse_num(&key, reply.next().as_ref())?;
        let mut claims = Vec::new();
        while let (Some(member), Some(score)) = (reply.next(), reply.next()) {
            let due_at_ms = score
                .parse::<f64>()
                .map_err(|_| Error::corrupt(&key, format!("bad score `{score}`")))?;
            claims.push(Claim {
                kind,
                order_id: parse_order_id(&key, &member)?,
                due_at_ms: due_at_ms as u64,
                claimed_until_ms,
            });
        }
        Ok(claims)
    }

    /// Removes a claimed order from its schedule, unless it was rescheduled
    /// since the claim (then the new due time stands). `true` if removed.
    pub async fn finish_claim(&self, claim: &Claim) -> Result<bool, Error> {
        let removed: i64 = self
            .scripts
            .finish_claim
            .key(self.keys.schedule(claim.kind))
            .arg(claim.order_id.as_str())
            .arg(claim.claimed_until_ms)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(removed == 1)
    }
}
