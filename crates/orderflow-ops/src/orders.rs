//! One order in full ([`show_order`]: state, each stage's outcome, the
//! downstream ids, the audit timeline, what an operator can do next) and
//! the orders in one state ([`list_orders`]).

use crate::archive::{ArchiveLocation, find_archived};
use crate::error::{Error, Result};
use crate::target::{Target, parse_order_id};
use jiff::Timestamp;
use orderflow_core::{Certainty, FailureClass, OrderState, Stage};
use orderflow_store::{AuditEntry, OrderRecord};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    pub order_id: String,
    pub state: OrderState,
    /// Why the order is in its state, when the move said.
    pub reason: Option<String>,
    pub version: u64,
    pub correlation_id: String,
    /// The policy of the latest write.
    pub policy_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// A cancellation was requested, with this reason.
    pub cancel_requested: Option<String>,
    /// For an escalated order: the state it was escalated from, which says
    /// whose problem it is (`payment_pending`: the payment's).
    pub escalated_from: Option<OrderState>,
    pub stages: Vec<StageView>,
    /// Every audited change and note, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// What a person may do with the order now.
    pub allowed: Vec<NextStep>,
    /// The same as `orderctl` commands.
    pub next_steps: Vec<String>,
    /// Set when the order has left Redis: where its archived copy is (the
    /// view is read from it).
    pub archived: Option<ArchiveLocation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageView {
    pub stage: Stage,
    /// The last classified outcome of the stage's downstream call.
    pub class: Option<FailureClass>,
    pub certainty: Option<Certainty>,
    /// What the stage's downstream made: reservation, payment, shipment.
    pub downstream_id: Option<String>,
    /// Runs of the stage for this order.
    pub runs: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub at: Timestamp,
    /// A worker (`payment-worker@host/1234`) or `operator:<name>`.
    pub actor: String,
    /// `None` for the order's creation; equal to `to` for a note.
    pub from: Option<OrderState>,
    pub to: OrderState,
    pub event: String,
    pub reason: Option<String>,
    pub rule: Option<String>,
    pub policy_id: String,
    pub version: u64,
    pub correlation_id: String,
}

impl From<AuditEntry> for TimelineEntry {
    fn from(entry: AuditEntry) -> TimelineEntry {
        TimelineEntry {
            at: entry.at,
            actor: entry.actor,
            from: entry.from,
            to: entry.to,
            event: entry.event,
            reason: entry.reason,
            rule: entry.rule,
            policy_id: entry.policy_id,
            version: entry.version,
            correlation_id: entry.correlation_id,
        }
    }
}

/// The order `order_id` in full: from Redis, or, once retention removed
/// it there, from the archive (saying so).
pub async fn show_order(target: &Target, order_id: &str) -> Result<OrderView> {
    let order_id = parse_order_id(order_id)?;
    let store = target.store();
    let found = store
        .get_order(&order_id)
        .await
        .map_err(Error::store(format!("cannot read order {order_id}")))?;
    let Some(order) = found else {
        return match find_archived(target, &order_id).await? {
            Some((archived, location)) => {
                let unreadable =
                    |e| Error::Invalid(format!("the archived copy of {order_id}: {e}"));
                let order = archived.order().map_err(unreadable)?;
                let audit = archived.audit_entries().map_err(unreadable)?;
                Ok(view(order, audit, &archived.runs, Some(location)))
            }
            // Not archived either: say what the store knows of it.
            None => Err(target.not_found(&order_id).await),
        };
    };
    let audit = store
        .order_audit(&order_id)
        .await
        .map_err(Error::store(format!("cannot read the audit of {order_id}")))?;
    let mut runs = BTreeMap::new();
    for stage in Stage::ALL {
        let count = store
            .attempts(&order_id, stage)
            .await
            .map_err(Error::store(format!("cannot read the runs of {order_id}")))?;
        runs.insert(stage, count);
    }
    Ok(view(order, audit, &runs, None))
}

fn view(
    order: OrderRecord,
    audit: Vec<AuditEntry>,
    runs: &BTreeMap<Stage, u32>,
    archived: Option<ArchiveLocation>,
) -> OrderView {
    let stages = Stage::ALL
        .into_iter()
        .map(|stage| {
            let outcome = order.last_outcomes.get(&stage);
            StageView {
                stage,
                class: outcome.map(|o| o.class),
                certainty: outcome.map(|o| o.certainty),
                downstream_id: order.downstream_ids.get(&stage).cloned(),
                runs: runs.get(&stage).copied().unwrap_or(0),
            }
        })
        .collect();
    let escalated_from = escalated_from(&order, &audit);
    OrderView {
        order_id: order.order_id.to_string(),
        state: order.state,
        reason: order.reason.clone(),
        version: order.version,
        correlation_id: order.correlation_id.clone(),
        policy_id: order.policy_id.clone(),
        created_at: order.created_at,
        updated_at: order.updated_at,
        cancel_requested: order.cancel_requested.clone(),
        escalated_from,
        stages,
        allowed: allowed_steps(order.state, escalated_from),
        next_steps: next_steps(&order, escalated_from),
        timeline: audit.into_iter().map(TimelineEntry::from).collect(),
        archived,
    }
}

/// For an escalated order, the state the latest escalation left.
pub(crate) fn escalated_from(order: &OrderRecord, audit: &[AuditEntry]) -> Option<OrderState> {
    if order.state != OrderState::Escalated {
        return None;
    }
    audit
        .iter()
        .rev()
        .find(|entry| {
            entry.to == OrderState::Escalated && entry.from != Some(OrderState::Escalated)
        })
        .and_then(|entry| entry.from)
}

/// An action a person may take on an order in its current state (what
/// the console offers as buttons and `orderctl order show` as commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum NextStep {
    /// Check the charge with the provider, then say how it ended.
    ResolvePayment,
    /// Run the stage again from its entry state.
    Retry { stage: Stage },
    /// Decide a blocked shipment: ship or refund.
    Unblock,
    /// Cancel, with the compensation plan shown first.
    Cancel,
}

/// What a person may do with an order in its state; nothing once it ended.
pub fn allowed_steps(state: OrderState, escalated_from: Option<OrderState>) -> Vec<NextStep> {
    match state {
        OrderState::PaymentPending => vec![NextStep::ResolvePayment, NextStep::Cancel],
        OrderState::Escalated => {
            let mut steps = Vec::new();
            match escalated_from.and_then(OrderState::owner) {
                // Resolve on the provider's word, or — once it answers
                // status queries again — let the stage ask it.
                Some(Stage::Payment) => steps.extend([
                    NextStep::ResolvePayment,
                    NextStep::Retry {
                        stage: Stage::Payment,
                    },
                ]),
                Some(stage) => steps.push(NextStep::Retry { stage }),
                None => {}
            }
            steps.push(NextStep::Cancel);
            steps
        }
        OrderState::Blocked => vec![NextStep::Unblock],
        state if state.is_terminal() => Vec::new(),
        _ => vec![NextStep::Cancel],
    }
}

/// Each allowed step as the `orderctl` command that takes it.
fn next_steps(order: &OrderRecord, escalated_from: Option<OrderState>) -> Vec<String> {
    let id = &order.order_id;
    let reason = "--reason TEXT";
    allowed_steps(order.state, escalated_from)
        .into_iter()
        .map(|step| match step {
            NextStep::ResolvePayment => format!(
                "check the charge with the payment provider, then: orderctl order resolve {id} --stage payment --outcome succeeded|failed {reason}"
            ),
            NextStep::Retry { stage } => {
                format!("orderctl order retry {id} --stage {stage} {reason}")
            }
            NextStep::Unblock => {
                format!("orderctl order unblock {id} --decision ship|refund {reason}")
            }
            NextStep::Cancel => format!(
                "orderctl order cancel {id} {reason}   (prints the plan; act with --yes)"
            ),
        })
        .collect()
}

/// Which orders [`list_orders`] returns.
#[derive(Debug, Clone)]
pub struct ListFilter {
    pub state: OrderState,
    /// Only orders whose reason starts with this (`payment_unresolved`,
    /// `superseded`).
    pub reason: Option<String>,
    /// Only orders in the state for at least this long.
    pub older_than: Option<Duration>,
    /// At most this many orders, longest in the state first.
    pub limit: usize,
}

/// A reason filter reads each order; it looks at this many, at most.
pub const REASON_SCAN_LIMIT: usize = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct OrderList {
    pub state: OrderState,
    pub orders: Vec<ListedOrder>,
    /// More orders match than were returned (raise the limit).
    pub truncated: bool,
    /// Said when nothing matched and the namespace looks wrong.
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListedOrder {
    pub order_id: String,
    /// When the order entered the state.
    pub since: Timestamp,
    pub reason: Option<String>,
    pub cancel_requested: Option<String>,
}

/// The orders in one state, longest there first.
pub async fn list_orders(target: &Target, filter: &ListFilter) -> Result<OrderList> {
    if filter.limit == 0 {
        return Err(Error::Invalid("the limit must be at least 1".to_owned()));
    }
    let store = target.store();
    let window = if filter.reason.is_some() {
        REASON_SCAN_LIMIT.max(filter.limit + 1)
    } else {
        filter.limit + 1
    };
    let entries = store
        .orders_in_state(filter.state, window)
        .await
        .map_err(Error::store(format!(
            "cannot read the {} orders",
            filter.state
        )))?;
    let cutoff = match filter.older_than {
        Some(age) => Some(
            Timestamp::now()
                .checked_sub(jiff::SignedDuration::try_from(age).map_err(|e| {
                    Error::Invalid(format!("--older-than {age:?} is too long: {e}"))
                })?)
                .map_err(|e| Error::Invalid(format!("--older-than {age:?} is too long: {e}")))?,
        ),
        None => None,
    };
    let mut orders = Vec::new();
    let mut truncated = false;
    for entry in entries {
        // Oldest first: once one is too young, so are the rest.
        if cutoff.is_some_and(|cutoff| entry.updated_at > cutoff) {
            break;
        }
        let Some(order) = store
            .get_order(&entry.order_id)
            .await
            .map_err(Error::store(format!(
                "cannot read order {}",
                entry.order_id
            )))?
        else {
            continue;
        };
        if let Some(prefix) = &filter.reason
            && !order
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with(prefix.as_str()))
        {
            continue;
        }
        if orders.len() == filter.limit {
            truncated = true;
            break;
        }
        orders.push(ListedOrder {
            order_id: entry.order_id.to_string(),
            since: entry.updated_at,
            reason: order.reason,
            cancel_requested: order.cancel_requested,
        });
    }
    let hint = if orders.is_empty() {
        target.empty_namespace_hint().await
    } else {
        None
    };
    Ok(OrderList {
        state: filter.state,
        orders,
        truncated,
        hint,
    })
}
