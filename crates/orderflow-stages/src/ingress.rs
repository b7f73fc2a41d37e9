//! What producers send, as the inventory stage admits it: `order.placed`
//! creates the order (a same-body duplicate is absorbed, a different body
//! under a known id is refused as `order_id_conflict`), `order.cancel`
//! records the request on the order, and step messages come back from the
//! stage's delay tiers and the reconciler.
//!
//! A cancel that overtakes its order — published right behind it and
//! admitted first by another consumer slot or replica, or an `order.placed`
//! whose `supersedes` names an order still on its way — is kept for that
//! order id in the store and applied when the order is created, in the same
//! script; one the order never meets is parked by the reconciler as
//! `cancel_unknown_order` once it has waited `exceptions.replay_window`.

use orderflow_broker::Incoming;
use orderflow_core::OrderState;
use orderflow_core::message::{Inbound, Invalid, OrderCancel, OrderId, OrderPlaced, parse_inbound};
use orderflow_runtime::{Admission, Entry, Env, Error, StepMessage};
use orderflow_store::{CancelAnswer, CancelAsk, CreateOutcome, Note, ScheduleKind};
use serde_json::Value;
use tracing::info;

/// The exception-queue reason of a replacement order naming another
/// customer's order.
pub const SUPERSEDE_OTHER_CUSTOMER: &str = "supersede_other_customer";

/// What a delivery to the inventory queue is.
pub enum Message {
    Placed(Box<OrderPlaced>),
    Cancel { order_id: OrderId, reason: String },
    Step(StepMessage),
}

pub fn read(body: &[u8]) -> Result<Message, Invalid> {
    let schema = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("schema").and_then(Value::as_str).map(str::to_owned));
    if schema.as_deref() == Some(orderflow_runtime::step::STEP_V1) {
        return StepMessage::parse(body, orderflow_core::Stage::Inventory).map(Message::Step);
    }
    Ok(match parse_inbound(body)? {
        Inbound::Placed(placed) => Message::Placed(placed),
        Inbound::Cancel(cancel) => Message::Cancel {
            order_id: cancel.order_id,
            reason: cancel.reason,
        },
    })
}

/// Which order a delivery is about; writes nothing.
pub fn admit(delivery: &Incoming) -> Admission {
    match read(delivery.body()) {
        Ok(Message::Step(step)) => Admission::Order(step.order_id),
        Ok(Message::Placed(placed)) => Admission::Order(placed.order_id),
        Ok(Message::Cancel { order_id, .. }) => Admission::Order(order_id),
        Err(invalid) => Admission::Malformed(invalid),
    }
}

/// What a producer's message writes before the order's lease is taken
/// (the runner holds the order's in-process lock).
pub async fn enter(delivery: &Incoming, env: &Env) -> Result<Entry, Error> {
    // `admit` parked anything unreadable; a step message writes nothing.
    let Ok(message) = read(delivery.body()) else {
        return Ok(Entry::Proceed);
    };
    let correlation_id = delivery.meta().correlation_id.clone().unwrap_or_default();
    match message {
        Message::Step(_) => Ok(Entry::Proceed),
        Message::Placed(placed) => place(env, delivery.body(), &placed, correlation_id).await,
        Message::Cancel { order_id, reason } => {
            let note = note(
                env,
                "order.cancel_requested",
                format!("cancelled: {reason}"),
                &correlation_id,
            );
            let message_id = delivery
                .meta()
                .message_id
                .clone()
                .unwrap_or_else(|| format!("cancel.{order_id}"));
            let ask = CancelAsk {
                note: &note,
                customer_id: None,
                only_in: &[],
                message: delivery.body(),
                message_id: &message_id,
            };
            match env.store.ask_cancel(&order_id, &ask).await? {
                CancelAnswer::Kept { kept_at_ms } => {
                    report_unmet(env, &order_id, kept_at_ms).await?;
                    info!(order_id = %order_id, "cancel for an order not yet known: kept until it arrives");
                    Ok(Entry::Absorbed)
                }
                _ => Ok(Entry::Proceed),
            }
        }
    }
}

async fn place(
    env: &Env,
    body: &[u8],
    placed: &OrderPlaced,
    correlation_id: String,
) -> Result<Entry, Error> {
    let id = &placed.order_id;
    if let Some(earlier) = &placed.supersedes
        && let Some(record) = env.store.get_order(earlier).await?
        && customer_of(&record.body) != Some(placed.customer_id.as_str())
    {
        return Ok(Entry::Refused {
            reason: SUPERSEDE_OTHER_CUSTOMER.into(),
            detail: format!(
                "{id} supersedes {earlier}, which belongs to another customer; \
                 an order may only replace its own customer's order. \
                 {id} was not created and {earlier} was not touched"
            ),
        });
    }
    let body: Value = serde_json::from_slice(body).expect("a valid order is JSON");
    let correlation_id = if correlation_id.is_empty() {
        id.to_string()
    } else {
        correlation_id
    };
    let created = env
        .store
        .create_order(id, &body, &correlation_id, &env.policy_id, &env.actor)
        .await?;
    if let CreateOutcome::AlreadyExists {
        same_body: false, ..
    } = created
    {
        return Ok(Entry::Refused {
            reason: "order_id_conflict".into(),
            detail: "an order with this id and a different body exists; \
                     the new message was not applied"
                .into(),
        });
    }
    if let Some(earlier) = &placed.supersedes {
        supersede(env, earlier, placed, &correlation_id).await?;
    }
    Ok(Entry::Proceed)
}

fn customer_of(body: &Value) -> Option<&str> {
    body.get("customer_id").and_then(Value::as_str)
}

/// The states in which an order has not been charged: a replacement order
/// may still cancel it.
const BEFORE_PAYMENT: [OrderState; 3] = [
    OrderState::Received,
    OrderState::InventoryPending,
    OrderState::Reserved,
];

/// Asks for `earlier` to be cancelled, if it is the same customer's and
/// still before payment (checked in the same step as the request); kept
/// for it if it has not arrived yet; otherwise noted on the order that
/// stays.
async fn supersede(
    env: &Env,
    earlier: &OrderId,
    by: &OrderPlaced,
    correlation_id: &str,
) -> Result<(), Error> {
    let reason = format!("superseded by {}", by.order_id);
    let cancel = OrderCancel {
        schema: orderflow_core::message::ORDER_CANCEL_V1.to_owned(),
        order_id: earlier.clone(),
        reason: reason.clone(),
    };
    let message = serde_json::to_vec(&cancel).expect("a cancel serializes");
    let message_id = format!("supersede.{}.{earlier}", by.order_id);
    let request = note(env, "order.superseded", reason, correlation_id);
    let ask = CancelAsk {
        note: &request,
        customer_id: Some(&by.customer_id),
        only_in: &BEFORE_PAYMENT,
        message: &message,
        message_id: &message_id,
    };
    match env.store.ask_cancel(earlier, &ask).await? {
        CancelAnswer::Requested(_) => {}
        CancelAnswer::Kept { kept_at_ms } => report_unmet(env, earlier, kept_at_ms).await?,
        CancelAnswer::OtherCustomer { .. } => {
            // The earlier order arrived between the check at the door and
            // now: it stays untouched, and the replacement says why.
            let note = note(
                env,
                "order.supersede_refused",
                format!("{earlier} belongs to another customer: not cancelled"),
                correlation_id,
            );
            env.store.note(&by.order_id, &note).await?;
        }
        CancelAnswer::TooLate { state, .. } => {
            let note = note(
                env,
                "order.supersede_ignored",
                format!("superseded by {} too late: already {state}", by.order_id),
                correlation_id,
            );
            env.store.note(earlier, &note).await?;
        }
    }
    Ok(())
}

/// Schedules the report of a cancel kept for `order_id` should the order
/// never arrive: after `exceptions.replay_window`, as long as a parked
/// `order.placed` may still be replayed to meet it. Scheduled from when it
/// was first kept, so a redelivered copy does not postpone it.
async fn report_unmet(env: &Env, order_id: &OrderId, kept_at_ms: u64) -> Result<(), Error> {
    let wait = u64::try_from(env.policy.exceptions.replay_window.as_millis()).unwrap_or(u64::MAX);
    env.store
        .schedule(
            ScheduleKind::EarlyCancel,
            order_id,
            kept_at_ms.saturating_add(wait),
        )
        .await?;
    Ok(())
}

fn note(env: &Env, event: &str, reason: String, correlation_id: &str) -> Note {
    Note {
        event: event.to_owned(),
        reason: Some(reason),
        actor: env.actor.clone(),
        correlation_id: correlation_id.to_owned(),
        policy_id: env.policy_id.clone(),
        rule: None,
    }
}
