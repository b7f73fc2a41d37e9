//! Order records, the compare-and-set transition, audit-only notes and
//! idempotency records.
//!
//! A transition is checked against the state machine in Rust before Redis
//! is touched, then one script over the order's keys checks version, state
//! and fencing number and, only if all hold, writes the new state, the
//! step's idempotency record and the audit entry. So "step done", "state
//! moved" and "audited" can never disagree after a crash.

use crate::error::Error;
use crate::index::Leaving;
use crate::parse::{parse_num, parse_state, timestamp};
use crate::{ScheduleKind, Store, audit, index};
use jiff::Timestamp;
use orderflow_core::message::OrderId;
use orderflow_core::state::check_transition;
use orderflow_core::{Certainty, FailureClass, OrderState, PolicyId, Stage};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// The audit event of an order's creation.
pub const CREATED_EVENT: &str = "order.created";

/// The audit event of an order the store had lost, recorded again as
/// escalated ([`Store::record_lost_order`]).
pub const LOST_EVENT: &str = "order.lost_by_store";

/// An order the store lost whole, as a message about it proves.
#[derive(Debug, Clone, PartialEq)]
pub struct LostOrder {
    /// The order's version when the message was sent.
    pub sent_at_version: u64,
    pub reason: String,
    pub correlation_id: String,
    pub policy_id: PolicyId,
    pub actor: String,
    pub rule: String,
}

/// The last classified outcome of a stage's downstream call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastOutcome {
    pub class: FailureClass,
    pub certainty: Certainty,
}

/// What the store knows about an order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecord {
    pub order_id: OrderId,
    pub state: OrderState,
    /// Starts at 1 and grows by one with every transition.
    pub version: u64,
    /// Why the order is in this state, when the last transition said.
    pub reason: Option<String>,
    /// The order as received (`order.placed/v1`).
    pub body: Value,
    /// The correlation id of the message that created the order.
    pub correlation_id: String,
    /// The policy of the latest write.
    pub policy_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The downstream's id per stage: reservation, payment, shipment.
    pub downstream_ids: BTreeMap<Stage, String>,
    pub last_outcomes: BTreeMap<Stage, LastOutcome>,
    /// A cancellation was requested, with this reason
    /// ([`Store::request_cancel`]).
    pub cancel_requested: Option<String>,
    /// The inventory confirmed the reservation's commit (the stock is sold).
    pub reservation_committed: bool,
}

impl OrderRecord {
    /// Whether `stage`'s operation may have taken effect at its provider:
    /// the stage reported an outcome for the order that was not a
    /// confirmed "not applied". It stays on the order when an operator
    /// sends the order back to the stage, so the stage asks the provider
    /// by key before it sends the operation again or compensates.
    pub fn may_have_applied(&self, stage: Stage) -> bool {
        self.last_outcomes
            .get(&stage)
            .is_some_and(|last| last.certainty != Certainty::NotApplied)
    }
}

/// The result of [`Store::create_order`].
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    Created {
        version: u64,
    },
    /// The id is taken. `same_body` tells a redelivered duplicate (true)
    /// from a different order reusing the id (false).
    AlreadyExists {
        record: Box<OrderRecord>,
        same_body: bool,
    },
}

/// A field a transition may set besides state and reason. Typed, so a
/// caller cannot overwrite `state` or `version` by accident.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldUpdate {
    /// The downstream's id for what this stage made (reservation, payment,
    /// shipment).
    DownstreamId {
        stage: Stage,
        id: String,
    },
    LastOutcome {
        stage: Stage,
        outcome: LastOutcome,
    },
    /// The inventory confirmed the reservation's commit.
    ReservationCommitted,
}

/// One compare-and-set move of an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The version the caller read; the move fails with
    /// [`Error::Conflict`] if the order has moved since.
    pub expected_version: u64,
    pub from: OrderState,
    pub to: OrderState,
    /// Required (non-blank) when entering `blocked` or `escalated`.
    pub reason: Option<String>,
    /// What happened, e.g. `payment.authorised`.
    pub event: String,
    /// Who moved it, e.g. `payment-worker/host-1` or `operator:alice`.
    pub actor: String,
    pub correlation_id: String,
    pub policy_id: PolicyId,
    /// The policy rule that decided, if any.
    pub rule: Option<String>,
    pub fields_to_set: Vec<FieldUpdate>,
    /// `(stage, step, result)`: the step's idempotency record, written in
    /// the same atomic step as the move.
    pub idempotency: Option<(Stage, String, Value)>,
    /// The stage lease's fencing number: the move is refused with
    /// [`Error::StaleFence`] if a newer lease was issued since.
    pub fencing: Option<(Stage, u64)>,
    /// With `fencing`: drop that lease in the same step (the holder's work
    /// ends with the move), saving a round trip.
    pub release_lease: bool,
}

/// An audit entry that moves nothing ("re-check: still unknown").
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub event: String,
    pub reason: Option<String>,
    pub actor: String,
    pub correlation_id: String,
    pub policy_id: PolicyId,
    pub rule: Option<String>,
}

/// A write that landed: what the script returned.
pub(crate) struct Written {
    pub(crate) version: u64,
    pub(crate) state: OrderState,
    pub(crate) at_ms: u64,
    /// The audit entry's fields, for the fleet-wide copy.
    pub(crate) fields: Vec<(String, String)>,
}

impl Store {
    /// Creates the order in `received` at version 1 if the id is free,
    /// with a cancellation kept for it ([`Store::ask_cancel`]) applied in
    /// the same step: it is created with `cancel_requested` and an audit
    /// note of the request (one naming another `customer_id` is noted as
    /// refused instead).
    pub async fn create_order(
        &self,
        order_id: &OrderId,
        body: &Value,
        correlation_id: &str,
        policy_id: &PolicyId,
        actor: &str,
    ) -> Result<CreateOutcome, Error> {
        let state_key = self.keys.state(order_id);
        // Indexed before it exists: should Redis lose the writes after
        // this one, the order is still found by the reconciler's sweeps
        // rather than sitting unseen. A stale entry (the order exists, or
        // the create never lands) is repaired by the readers.
        self.index_ahead(order_id, OrderState::Received).await?;
        let customer_id = body.get("customer_id").and_then(Value::as_str);
        let replies: Vec<Vec<String>> = self
            .scripts
            .create
            .key(&state_key)
            .key(self.keys.audit(order_id))
            .key(self.keys.early_cancel(order_id))
            .arg(order_id.as_str())
            .arg(body.to_string())
            .arg(correlation_id)
            .arg(policy_id.as_str())
            .arg(actor)
            .arg(CREATED_EVENT)
            .arg(customer_id.unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await?;
        let mut replies = replies.into_iter();
        let reply = replies.next().unwrap_or_default();
        if reply.first().map(String::as_str) == Some("exists") {
            // The body never changes after creation, so reading it after the
            // script cannot mix two orders.
            let record = self
                .get_order(order_id)
                .await?
                .ok_or_else(|| Error::corrupt(&state_key, "existed, then vanished"))?;
            let same_body = record.body == *body;
            return Ok(CreateOutcome::AlreadyExists {
                record: Box::new(record),
                same_body,
            });
        }
        let written = parse_written(&state_key, reply)?;
        let version = written.version;
        self.after_write(order_id, written, Some(Leaving::Nothing))
            .await;
        // The note of a kept cancellation, met by this creation: it no
        // longer waits to be reported. Like the other fleet-wide keys the
        // schedule may lag after a crash; its report then finds nothing.
        for reply in replies {
            let written = parse_written(&state_key, reply)?;
            self.after_write(order_id, written, None).await;
            if let Err(err) = self.unschedule(ScheduleKind::EarlyCancel, order_id).await {
                tracing::warn!(order_id = %order_id, error = %err, "kept cancel met, but still scheduled for its report");
            }
        }
        Ok(CreateOutcome::Created { version })
    }

    /// Records, as escalated with `lost.reason`, an order that a message
    /// proves existed at `lost.sent_at_version` but that the store no
    /// longer has (it lost writes it had acknowledged). Returns false when
    /// the order exists after all.
    pub async fn record_lost_order(
        &self,
        order_id: &OrderId,
        lost: &LostOrder,
    ) -> Result<bool, Error> {
        let state_key = self.keys.state(order_id);
        self.index_ahead(order_id, OrderState::Escalated).await?;
        let reply: Vec<String> = self
            .scripts
            .lost
            .key(&state_key)
            .key(self.keys.audit(order_id))
            .arg(order_id.as_str())
            .arg(lost.sent_at_version)
            .arg(&lost.reason)
            .arg(&lost.correlation_id)
            .arg(lost.policy_id.as_str())
            .arg(&lost.actor)
            .arg(LOST_EVENT)
            .arg(&lost.rule)
            .invoke_async(&mut self.conn())
            .await?;
        if reply.first().map(String::as_str) == Some("exists") {
            return Ok(false);
        }
        let written = parse_written(&state_key, reply)?;
        // Whatever the index still says of it is older than the loss.
        self.after_write(order_id, written, Some(Leaving::Unknown))
            .await;
        Ok(true)
    }

    pub async fn get_order(&self, order_id: &OrderId) -> Result<Option<OrderRecord>, Error> {
        let key = self.keys.state(order_id);
        let map: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.conn())
            .await?;
        if map.is_empty() {
            return Ok(None);
        }
        parse_record(&key, order_id, &map).map(Some)
    }

    /// Moves the order; returns its new version. Illegal moves and a
    /// missing reason are refused before Redis is touched.
    pub async fn transition(&self, order_id: &OrderId, t: &Transition) -> Result<u64, Error> {
        check_transition(t.from, t.to, t.reason.as_deref())?;
        let state_key = self.keys.state(order_id);
        let mut call = self.scripts.transition.prepare_invoke();
        call.key(&state_key).key(self.keys.audit(order_id));
        let idem_result = match &t.idempotency {
            Some((stage, step, result)) => {
                check_step(step)?;
                call.key(self.keys.idem(order_id, *stage, step))
                    .key(self.keys.steps(order_id));
                result.to_string()
            }
            None => String::new(),
        };
        let fencing = match t.fencing {
            Some((stage, fencing)) => {
                call.key(self.keys.fence(order_id, stage));
                if t.release_lease {
                    call.key(self.keys.lease(order_id, stage));
                }
                fencing.to_string()
            }
            None => String::new(),
        };
        call.arg(order_id.as_str())
            .arg(t.expected_version)
            .arg(t.from.as_str())
            .arg(t.to.as_str())
            .arg(t.reason.as_deref().unwrap_or(""))
            .arg(&t.event)
            .arg(&t.actor)
            .arg(&t.correlation_id)
            .arg(t.policy_id.as_str())
            .arg(t.rule.as_deref().unwrap_or(""))
            .arg(idem_result)
            .arg(fencing)
            .arg(if t.release_lease { "1" } else { "0" });
        for (field, value) in t.fields_to_set.iter().flat_map(field_pairs) {
            call.arg(field).arg(value);
        }
        let reply: Vec<String> = call.invoke_async(&mut self.conn()).await?;
        match (reply.first().map(String::as_str), t.fencing) {
            (Some("missing"), _) => Err(Error::NotFound(order_id.clone())),
            (Some("stale_fence"), Some((stage, fencing))) => Err(Error::StaleFence {
                order_id: order_id.clone(),
                stage,
                fencing,
                current: parse_num(&state_key, reply.get(1))?,
            }),
            (Some("conflict"), _) => Err(Error::Conflict {
                order_id: order_id.clone(),
                expected: t.expected_version,
                actual_version: parse_num(&state_key, reply.get(1))?,
                actual_state: parse_state(&state_key, reply.get(2))?,
            }),
            _ => {
                let written = parse_written(&state_key, reply)?;
                let version = written.version;
                self.after_write(order_id, written, Some(Leaving::State(t.from)))
                    .await;
                Ok(version)
            }
        }
    }

    /// Appends an audit entry against the order's current state without
    /// moving it or bumping its version; returns that version.
    pub async fn note(&self, order_id: &OrderId, note: &Note) -> Result<u64, Error> {
        let state_key = self.keys.state(order_id);
        let reply: Vec<String> = self
            .scripts
            .note
            .key(&state_key)
            .key(self.keys.audit(order_id))
            .arg(order_id.as_str())
            .arg(&note.actor)
            .arg(&note.event)
            .arg(note.reason.as_deref().unwrap_or(""))
            .arg(note.rule.as_deref().unwrap_or(""))
            .arg(&note.correlation_id)
            .arg(note.policy_id.as_str())
            .invoke_async(&mut self.conn())
            .await?;
        if reply.first().map(String::as_str) == Some("missing") {
            return Err(Error::NotFound(order_id.clone()));
        }
        let written = parse_written(&state_key, reply)?;
        let version = written.version;
        self.after_write(order_id, written, None).await;
        Ok(version)
    }

    /// The recorded result of a finished step, if it finished.
    pub async fn get_step_result(
        &self,
        order_id: &OrderId,
        stage: Stage,
        step: &str,
    ) -> Result<Option<Value>, Error> {
        check_step(step)?;
        let key = self.keys.idem(order_id, stage, step);
        let raw: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.conn())
            .await?;
        raw.map(|raw| {
            serde_json::from_str(&raw).map_err(|err| Error::corrupt(&key, err.to_string()))
        })
        .transpose()
    }

    /// Follows up on an order's script that landed: waits for replicas
    /// when asked to ([`crate::StoreOptions::replica_acks`]), then updates
    /// the fleet-wide keys. A failure here does not undo the write, so it
    /// is logged, not returned: the caller must not redo a move that
    /// happened. The index heals on the order's next write or
    /// [`Store::reindex_order`].
    /// `leaving`: the index entry the write moves the order out of, `None`
    /// for a write that moves nothing (a note).
    pub(crate) async fn after_write(
        &self,
        order_id: &OrderId,
        written: Written,
        leaving: Option<Leaving>,
    ) {
        self.await_replicas(order_id, written.version).await;
        let mut cmds = match leaving {
            Some(leaving) => index::sync_cmds(
                &self.keys,
                order_id,
                Some((written.state, written.at_ms)),
                leaving,
            ),
            None => Vec::new(),
        };
        cmds.push(audit::fleet_copy(
            &self.keys,
            self.fleet_audit_maxlen,
            &written.fields,
        ));
        if let Err(err) = self.fleet_writes.send(cmds).await {
            tracing::warn!(
                order_id = %order_id,
                version = written.version,
                error = %err,
                "order written, but the fleet audit copy or state index was not updated"
            );
        }
    }

    /// `WAIT` for the replicas of the order's master to acknowledge the
    /// write, on the connection that made it (`WAIT` counts that
    /// connection's writes). Too few in time is logged: the write stands,
    /// only less safely.
    async fn await_replicas(&self, order_id: &OrderId, version: u64) {
        let Some(acks) = self.replica_acks else {
            return;
        };
        let mut wait = redis::cmd("WAIT");
        wait.arg(acks.replicas).arg(acks.timeout_ms);
        let acked = self
            .conn
            .on_master_of(&self.keys.state(order_id), wait)
            .await
            .and_then(|reply| {
                redis::from_redis_value::<u64>(reply)
                    .map_err(|err| Error::corrupt("WAIT", err.to_string()))
            });
        match acked {
            Ok(acked) if acked >= u64::from(acks.replicas) => {}
            Ok(acked) => tracing::warn!(
                order_id = %order_id, version, acked, wanted = acks.replicas,
                timeout_ms = acks.timeout_ms,
                "order written, but fewer replicas acknowledged it in time than asked"
            ),
            Err(err) => tracing::warn!(
                order_id = %order_id, version, error = %err,
                "order written, but waiting for its replicas failed"
            ),
        }
    }
}

/// Step names end the idempotency key; they must be non-empty.
pub(crate) fn check_step(step: &str) -> Result<(), Error> {
    if step.is_empty() {
        return Err(Error::InvalidArgument("empty step name".to_owned()));
    }
    Ok(())
}

fn downstream_field(stage: Stage) -> &'static str {
    match stage {
        Stage::Inventory => "reservation_id",
        Stage::Payment => "payment_id",
        Stage::Shipping => "shipment_id",
    }
}

fn class_field(stage: Stage) -> String {
    format!("{stage}_class")
}

fn certainty_field(stage: Stage) -> String {
    format!("{stage}_certainty")
}

fn field_pairs(update: &FieldUpdate) -> Vec<(String, String)> {
    match update {
        FieldUpdate::DownstreamId { stage, id } => {
            vec![(downstream_field(*stage).to_owned(), id.clone())]
        }
        FieldUpdate::LastOutcome { stage, outcome } => vec![
            (class_field(*stage), outcome.class.as_str().to_owned()),
            (
                certainty_field(*stage),
                outcome.certainty.as_str().to_owned(),
            ),
        ],
        FieldUpdate::ReservationCommitted => {
            vec![(RESERVATION_COMMITTED.to_owned(), "1".to_owned())]
        }
    }
}

const RESERVATION_COMMITTED: &str = "reservation_committed";

/// `{'ok', version, state, at_ms, entry_id, field, value, ...}`
pub(crate) fn parse_written(key: &str, reply: Vec<String>) -> Result<Written, Error> {
    if reply.first().map(String::as_str) != Some("ok") || reply.len() < 5 {
        return Err(Error::corrupt(
            key,
            format!("unexpected script reply {reply:?}"),
        ));
    }
    let version = parse_num(key, reply.get(1))?;
    let state = parse_state(key, reply.get(2))?;
    let at_ms = parse_num(key, reply.get(3))?;
    let mut fields = Vec::with_capacity((reply.len() - 5) / 2);
    let mut rest = reply.into_iter().skip(5);
    while let (Some(field), Some(value)) = (rest.next(), rest.next()) {
        fields.push((field, value));
    }
    Ok(Written {
        version,
        state,
        at_ms,
        fields,
    })
}

pub(crate) fn parse_record(
    key: &str,
    order_id: &OrderId,
    map: &HashMap<String, String>,
) -> Result<OrderRecord, Error> {
    let get = |name: &str| {
        map.get(name)
            .ok_or_else(|| Error::corrupt(key, format!("missing field `{name}`")))
    };
    let body = serde_json::from_str(get("body")?)
        .map_err(|err| Error::corrupt(key, format!("body: {err}")))?;
    let mut downstream_ids = BTreeMap::new();
    let mut last_outcomes = BTreeMap::new();
    for stage in Stage::ALL {
        if let Some(id) = map.get(downstream_field(stage)) {
            downstream_ids.insert(stage, id.clone());
        }
        if let (Some(class), Some(certainty)) = (
            map.get(&class_field(stage)),
            map.get(&certainty_field(stage)),
        ) {
            let outcome = LastOutcome {
                class: class
                    .parse()
                    .map_err(|err: String| Error::corrupt(key, err))?,
                certainty: certainty
                    .parse()
                    .map_err(|err: String| Error::corrupt(key, err))?,
            };
            last_outcomes.insert(stage, outcome);
        }
    }
    Ok(OrderRecord {
        order_id: order_id.clone(),
        state: parse_state(key, map.get("state"))?,
        version: parse_num(key, map.get("version"))?,
        reason: map.get("reason").cloned(),
        body,
        correlation_id: get("correlation_id")?.clone(),
        policy_id: get("policy_id")?.clone(),
        created_at: timestamp(key, parse_num(key, map.get("created_at_ms"))?)?,
        updated_at: timestamp(key, parse_num(key, map.get("updated_at_ms"))?)?,
        downstream_ids,
        last_outcomes,
        cancel_requested: map.get("cancel_requested").cloned(),
        reservation_committed: map.contains_key(RESERVATION_COMMITTED),
    })
}
