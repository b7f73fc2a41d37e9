//! The start of one delivery in one round trip: the stage lease, then the
//! message's idempotency record or — when there is none — the run count and
//! the order. A worker's hot path makes this call, the compare-and-set
//! transition and the lease release, and nothing else.

use crate::Store;
use crate::error::Error;
use crate::lease::{Lease, ttl_ms};
use crate::order::{OrderRecord, check_step, parse_record};
use crate::parse::parse_num;
use orderflow_core::Stage;
use orderflow_core::message::OrderId;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// Where a delivery stands once it has begun.
#[derive(Debug)]
pub enum Begun {
    /// Another worker holds the order's stage lease.
    Busy,
    /// This message already settled: its recorded result, to re-emit.
    Recorded { lease: Lease, record: Value },
    /// Work to do: the stage's run count (this one included) and the order
    /// (`None` when the store has no such order). Boxed: a record is much
    /// larger than the other answers.
    Ready {
        lease: Lease,
        runs: u32,
        order: Option<Box<OrderRecord>>,
    },
}

impl Store {
    pub async fn begin_step(
        &self,
        order_id: &OrderId,
        stage: Stage,
        owner_token: &str,
        ttl: Duration,
        step: &str,
    ) -> Result<Begun, Error> {
        check_step(step)?;
        if owner_token.is_empty() {
            return Err(Error::InvalidArgument("empty lease owner token".to_owned()));
        }
        let state_key = self.keys.state(order_id);
        let reply: Vec<String> = self
            .scripts
            .begin
            .key(self.keys.lease(order_id, stage))
            .key(self.keys.fence(order_id, stage))
            .key(self.keys.idem(order_id, stage, step))
            .key(self.keys.attempts(order_id, stage))
            .key(&state_key)
            .arg(owner_token)
            .arg(ttl_ms(ttl)?)
            .invoke_async(&mut self.conn())
            .await?;
        let lease = |fencing: Option<&String>| -> Result<Lease, Error> {
            Ok(Lease {
                order_id: order_id.clone(),
                stage,
                token: owner_token.to_owned(),
                fencing: parse_num(&state_key, fencing)?,
            })
        };
        match reply.first().map(String::as_str) {
            Some("busy") => Ok(Begun::Busy),
            Some("recorded") => {
                let key = self.keys.idem(order_id, stage, step);
                let raw = reply
                    .get(2)
                    .ok_or_else(|| Error::corrupt(&key, "empty record"))?;
                let record = serde_json::from_str(raw)
                    .map_err(|err| Error::corrupt(&key, err.to_string()))?;
                Ok(Begun::Recorded {
                    lease: lease(reply.get(1))?,
                    record,
                })
            }
            Some("ready") => {
                let runs: u64 = parse_num(&self.keys.attempts(order_id, stage), reply.get(2))?;
                let fields: HashMap<String, String> = reply[3..]
                    .chunks_exact(2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect();
                let order = if fields.is_empty() {
                    None
                } else {
                    Some(Box::new(parse_record(&state_key, order_id, &fields)?))
                };
                Ok(Begun::Ready {
                    lease: lease(reply.get(1))?,
                    runs: u32::try_from(runs).unwrap_or(u32::MAX),
                    order,
                })
            }
            _ => Err(Error::corrupt(
                &state_key,
                format!("unexpected begin reply {reply:?}"),
            )),
        }
    }
}
