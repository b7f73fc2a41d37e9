//! `exceptions discard` and `edit`.
//!
//! Discard acknowledges messages after auditing each, with the operator's
//! reason. Edit is two calls around the operator's editor: [`open_edit()`]
//! reads the message without consuming it; [`edit()`] validates the new
//! body, sends it as a new message (id `<original>.edit-<hash>`, the same
//! for the same edit, so repeating an edit is absorbed like any duplicate)
//! and acknowledges the original, auditing the sha256 of both bodies. An
//! invalid body is refused with every problem, and the original stays. An
//! edited step is the step sent again: it keeps its first attempt and is
//! refused past the replay window, as a replay would be.

use super::audit::{Action, Audited};
use super::message::{BodyKind, EDIT_OF_HEADER, ExceptionMessage, sha256_hex};
use super::{Error, ExceptionQueues, Held, Operator};
use orderflow_broker::names::{ORDER_CANCEL, ORDER_PLACED};
use orderflow_broker::{Meta, Outgoing};
use orderflow_core::Stage;
use orderflow_core::message::{OrderId, Problem, parse_inbound};
use orderflow_runtime::StepMessage;
use serde::Serialize;
use serde_json::Value;

/// What `discard` did.
#[derive(Debug, Clone, Serialize)]
pub struct DiscardReport {
    pub stage: Stage,
    pub discarded: Vec<Discarded>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Discarded {
    pub id: String,
    pub order_id: Option<String>,
    pub reason: String,
    pub audit: Audited,
}

/// Removes the messages `ids` from the stage's exception queue, each
/// audited with `reason`. Nothing is removed unless every id is found.
pub async fn discard(
    queues: &ExceptionQueues,
    op: &Operator<'_>,
    stage: Stage,
    ids: &[String],
    reason: &str,
    limit: usize,
) -> Result<DiscardReport, Error> {
    op.audit_actor()?;
    if reason.trim().is_empty() {
        return Err(Error::Invalid(
            "say why with --reason: it goes into the audit".into(),
        ));
    }
    if ids.is_empty() {
        return Err(Error::Invalid("name at least one message id".into()));
    }
    let scan = queues.scan(stage, limit).await?;
    let result = async {
        let found = find(queues, stage, &scan.held, ids, scan.complete)?;
        let queue = queues.queue(stage);
        let mut discarded = Vec::new();
        for h in found {
            let audit = op
                .audit(
                    &queue,
                    Action {
                        event: "operator.discard",
                        message: &h.message,
                        order: None,
                        reason: format!(
                            "{reason} (discarded {stage} exception {}, reason {})",
                            h.message.id, h.message.reason
                        ),
                    },
                )
                .await?;
            h.taken.ack().await?;
            discarded.push(Discarded {
                id: h.message.id.clone(),
                order_id: h.message.order_id.clone(),
                reason: h.message.reason.clone(),
                audit,
            });
        }
        Ok(DiscardReport { stage, discarded })
    }
    .await;
    scan.close().await;
    result
}

/// The held messages with these ids (every copy of each), or which are
/// missing.
fn find<'h>(
    queues: &ExceptionQueues,
    stage: Stage,
    held: &'h [Held],
    ids: &[String],
    complete: bool,
) -> Result<Vec<&'h Held>, Error> {
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !held.iter().any(|h| &h.message.id == *id))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let queue = queues.queue(stage);
        return Err(Error::NotFound {
            queue: if complete {
                queue
            } else {
                format!("the first {} messages of {queue}", held.len())
            },
            ids: missing,
            read: held.len(),
        });
    }
    Ok(held
        .iter()
        .filter(|h| ids.contains(&h.message.id))
        .collect())
}

/// A message opened for editing.
#[derive(Debug, Clone, Serialize)]
pub struct EditSubject {
    pub message: ExceptionMessage,
    /// The body, to edit.
    pub body: Vec<u8>,
    /// Give it back to [`edit()`]: the edit applies only to this body.
    pub sha256: String,
}

/// Reads the message `id` of the stage's exception queue without consuming
/// it.
pub async fn open_edit(
    queues: &ExceptionQueues,
    stage: Stage,
    id: &str,
    limit: usize,
) -> Result<EditSubject, Error> {
    let scan = queues.scan(stage, limit).await?;
    let result = find(queues, stage, &scan.held, &[id.to_owned()], scan.complete).map(|found| {
        let h = found[0];
        EditSubject {
            message: h.message.clone(),
            body: h.taken.message().body().to_vec(),
            sha256: h.message.body_sha256.clone(),
        }
    });
    scan.close().await;
    result
}

/// Applies `path=value` assignments to a JSON body. A path is a JSON
/// Pointer (`/items/0/quantity`) or dotted (`items.0.quantity`); a value
/// that parses as JSON is that JSON (`2`, `true`, `"123"`), anything else a
/// string (`DE`).
pub fn apply_sets(body: &[u8], sets: &[String]) -> Result<Vec<u8>, Error> {
    let mut value: Value = serde_json::from_slice(body).map_err(|e| {
        Error::Invalid(format!(
            "the body is not JSON ({e}); edit it in $EDITOR instead of with --set"
        ))
    })?;
    for set in sets {
        let (path, raw) = set
            .split_once('=')
            .ok_or_else(|| Error::Invalid(format!("--set `{set}`: write it as path=value")))?;
        let pointer = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{}", path.replace('.', "/"))
        };
        let new: Value =
            serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        set_pointer(&mut value, &pointer, new)
            .map_err(|why| Error::Invalid(format!("--set `{set}`: {why}")))?;
    }
    Ok(serde_json::to_vec(&value).expect("JSON values serialize"))
}

/// Sets the value at `pointer`, adding the last key of an object if it is
/// missing (arrays only by index within bounds).
fn set_pointer(root: &mut Value, pointer: &str, new: Value) -> Result<(), String> {
    let (parent, last) = pointer
        .rsplit_once('/')
        .ok_or_else(|| "not a path".to_owned())?;
    let last = last.replace("~1", "/").replace("~0", "~");
    let target = if parent.is_empty() {
        root
    } else {
        root.pointer_mut(parent)
            .ok_or_else(|| format!("{parent} is not in the body"))?
    };
    match target {
        Value::Object(map) => {
            map.insert(last, new);
            Ok(())
        }
        Value::Array(items) => {
            let slot = last
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get_mut(i))
                .ok_or_else(|| format!("no item {last} in the array"))?;
            *slot = new;
            Ok(())
        }
        _ => Err(format!("{parent} is not an object or array")),
    }
}

/// Checks an edited body against its contract: a step message for this
/// stage, or a producer's message (every problem listed).
pub fn check_body(stage: Stage, body: &[u8]) -> Result<BodyKind, Error> {
    let kind = BodyKind::of(body);
    let problems: Vec<Problem> = match kind {
        BodyKind::Step => StepMessage::parse(body, stage)
            .err()
            .map(|i| i.problems)
            .unwrap_or_default(),
        _ => parse_inbound(body)
            .err()
            .map(|i| i.problems)
            .unwrap_or_default(),
    };
    if problems.is_empty() {
        Ok(kind)
    } else {
        Err(Error::InvalidBody { problems })
    }
}

/// An edit to apply.
#[derive(Debug, Clone)]
pub struct EditRequest {
    pub stage: Stage,
    pub id: String,
    /// The sha256 of the body that was edited ([`EditSubject::sha256`]).
    pub expected_sha256: String,
    pub body: Vec<u8>,
    /// Messages of the queue read at most to find it.
    pub limit: usize,
}

/// What `edit` did.
#[derive(Debug, Clone, Serialize)]
pub struct EditReport {
    pub original_id: String,
    pub new_id: String,
    pub before_sha256: String,
    pub after_sha256: String,
    pub destination: String,
    pub audit: Audited,
}

/// Sends the edited body in place of the original, which is acknowledged.
pub async fn edit(
    queues: &ExceptionQueues,
    op: &Operator<'_>,
    request: &EditRequest,
) -> Result<EditReport, Error> {
    op.audit_actor()?;
    let stage = request.stage;
    let kind = check_body(stage, &request.body)?;
    let after = sha256_hex(&request.body);
    if after == request.expected_sha256 {
        return Err(Error::Invalid(
            "the body is unchanged: nothing to send (replay it with `exceptions replay` instead)"
                .into(),
        ));
    }
    let scan = queues.scan(stage, request.limit).await?;
    let result = async {
        let found = find(
            queues,
            stage,
            &scan.held,
            std::slice::from_ref(&request.id),
            scan.complete,
        )?;
        let Some(h) = found
            .into_iter()
            .find(|h| h.message.body_sha256 == request.expected_sha256)
        else {
            return Err(Error::Refused(format!(
                "message {} no longer has the body that was edited; open it again",
                request.id
            )));
        };
        if let Some(why) = super::replay::past_replay_window(h, op.policy, jiff::Timestamp::now()) {
            return Err(Error::Refused(format!("{why}; nothing was sent")));
        }
        let new_id = edited_id(&request.id, &after);
        let (outgoing, destination) = edited_copy(queues, stage, kind, h, &new_id, &request.body, op);
        queues
            .publisher()
            .publish(outgoing)
            .await
            .map_err(|e| queues.broker_error(e))?;
        let edited_order = super::message::body_order_id(&request.body).and_then(|id| OrderId::parse(&id));
        let audit = op
            .audit(
                &queues.queue(stage),
                Action {
                    event: "operator.edit",
                    message: &h.message,
                    order: edited_order,
                    reason: format!(
                        "edited {stage} exception {} ({}): sha256 {} -> {after}; sent as {new_id} to {destination}",
                        h.message.id, h.message.reason, h.message.body_sha256
                    ),
                },
            )
            .await?;
        h.taken.ack().await?;
        Ok(EditReport {
            original_id: h.message.id.clone(),
            new_id,
            before_sha256: h.message.body_sha256.clone(),
            after_sha256: after.clone(),
            destination,
            audit,
        })
    }
    .await;
    scan.close().await;
    result
}

/// `<original>.edit-<12 hex of the new body's hash>`, within AMQP's 255.
fn edited_id(original: &str, after_sha256: &str) -> String {
    let base: String = original.chars().take(200).collect();
    format!("{base}.edit-{}", &after_sha256[..12])
}

fn edited_copy(
    queues: &ExceptionQueues,
    stage: Stage,
    kind: BodyKind,
    h: &Held,
    new_id: &str,
    body: &[u8],
    op: &Operator<'_>,
) -> (Outgoing, String) {
    let original = h.taken.message().meta();
    let meta = Meta {
        message_id: Some(new_id.to_owned()),
        correlation_id: original.correlation_id.clone(),
        timestamp: u64::try_from(jiff::Timestamp::now().as_second()).ok(),
        stage: Some(stage),
        attempt: Some(1),
        // A step keeps its first attempt, so its windows count from it.
        first_attempt_at: (kind == BodyKind::Step)
            .then(|| super::replay::first_attempt_ms(original))
            .flatten(),
        order_id: super::message::body_order_id(body),
        ..Meta::default()
    }
    .with_policy_id(&op.policy.id())
    .with_extra(EDIT_OF_HEADER, h.message.id.clone());
    let names = queues.names();
    let body = body.to_vec();
    match kind {
        BodyKind::Step => {
            let queue = names.work_queue(stage);
            (
                Outgoing::to_queue(&queue, body, meta),
                format!("queue {queue}"),
            )
        }
        _ => {
            let key = if kind == BodyKind::OrderCancel {
                ORDER_CANCEL
            } else {
                ORDER_PLACED
            };
            let exchange = names.orders_exchange();
            let destination = format!("exchange {exchange}, key {key}");
            (
                Outgoing {
                    exchange,
                    routing_key: key.to_owned(),
                    body,
                    meta,
                },
                destination,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_take_pointers_or_dotted_paths_and_json_or_text() {
        let body = br#"{"order_id":"o 1","items":[{"sku":"A","quantity":0}],"shipping_address":{"country":"de"}}"#;
        let out = apply_sets(
            body,
            &[
                "order_id=o-1".into(),
                "/items/0/quantity=2".into(),
                "shipping_address.country=DE".into(),
                "supersedes=\"123\"".into(),
            ],
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["order_id"], "o-1");
        assert_eq!(v["items"][0]["quantity"], 2);
        assert_eq!(v["shipping_address"]["country"], "DE");
        assert_eq!(v["supersedes"], "123");
    }

    #[test]
    fn bad_sets_say_why() {
        let body = br#"{"items":[]}"#;
        for (set, says) in [
            ("nothing", "path=value"),
            ("items.3=1", "no item 3"),
            ("a.b=1", "/a is not in the body"),
        ] {
            let err = apply_sets(body, &[set.into()]).unwrap_err().to_string();
            assert!(err.contains(says), "{set}: {err}");
        }
        assert!(
            apply_sets(b"not json", &["a=1".into()])
                .unwrap_err()
                .to_string()
                .contains("$EDITOR")
        );
    }

    #[test]
    fn edited_bodies_are_checked_against_their_contract() {
        let cancel = br#"{"schema":"order.cancel/v1","order_id":"o-1","reason":"changed mind"}"#;
        assert_eq!(
            check_body(Stage::Inventory, cancel).unwrap(),
            BodyKind::OrderCancel
        );
        let bad = br#"{"schema":"order.cancel/v1","order_id":"o 1","reason":""}"#;
        let Err(Error::InvalidBody { problems }) = check_body(Stage::Inventory, bad) else {
            panic!("refused");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        let step = br#"{"schema":"orderflow.step/v1","order_id":"o-1","stage":"payment"}"#;
        assert_eq!(check_body(Stage::Payment, step).unwrap(), BodyKind::Step);
        assert!(check_body(Stage::Shipping, step).is_err());
    }

    #[test]
    fn edited_ids_are_stable_and_short_enough() {
        let sha = sha256_hex(b"x");
        assert_eq!(edited_id("m-1", &sha), edited_id("m-1", &sha));
        assert!(edited_id(&"m".repeat(300), &sha).len() <= 255);
    }
}
