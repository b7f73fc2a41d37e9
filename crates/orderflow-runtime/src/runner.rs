//! The per-delivery stage loop (docs/design.md §3), the one place a delivery is
//! settled:
//!
//! 1. admit: decode and validate; malformed → exception queue, ack;
//! 2. lock the order in this process; enter: what the delivery writes
//!    before the order's lease (ingress creates the order, records or keeps
//!    a cancel), so one process admits one order's messages one at a time;
//!    then take the order's stage lease in the store (held elsewhere → an
//!    overlapping duplicate: defer it, never run it alongside);
//! 3. an idempotency record for this message → re-emit what it recorded, ack
//!    (a crash between the state write and the publish);
//! 4. run the stage's logic (downstream calls, `decide`) → an [`Effect`];
//! 5. write state + audit + the rendered messages by compare-and-set, fenced
//!    by the lease, and
//! 6. publish each message, awaiting its confirm — both through
//!    [`crate::write`], the write path operator actions take too;
//! 7. ack.
//!
//! A crash anywhere leaves the message unacknowledged; its redelivery finds
//! either nothing written (and runs again: downstream calls carry the same
//! idempotency key) or the record (and re-emits it). The crash points are
//! named in [`crate::crash`].

use crate::crash;
use crate::effect::{Effect, Emission, RenderContext, Rendered, render};
use crate::keyed::KeyedLocks;
use crate::lost::{self, Lost, lost_writes};
use crate::patience::patiently;
use crate::step::StepMessage;
use crate::write::{Writer, Written, publish_confirmed};
use orderflow_broker::{Handler, Incoming, Meta, Outgoing, Publisher, Settlement, TopologySpec};
use orderflow_core::message::{Invalid, OrderId, Problem};
use orderflow_core::{OrderState, Policy, PolicyId, Stage};
use orderflow_store::{Begun, ErrorClass, Lease, LostOrder, OrderRecord, Store};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

/// What every stage's logic gets to work with.
#[derive(Clone)]
pub struct Env {
    pub store: Store,
    pub policy: Arc<Policy>,
    pub policy_id: PolicyId,
    pub spec: Arc<TopologySpec>,
    /// Who acts in audit entries, e.g. `payment-worker@host/1234`.
    pub actor: String,
}

/// The delivery being worked on, as the logic sees it.
#[derive(Debug, Clone)]
pub struct Job {
    pub message_id: String,
    pub correlation_id: String,
    pub meta: Meta,
    /// Runs of this stage for the order, this one included. Counted in the
    /// store, so a crash or a fresh copy never starts it again.
    pub runs: u32,
    /// Epoch ms of the stage's first attempt (carried by deferred copies).
    pub first_attempt_at_ms: i64,
    pub elapsed: Duration,
    /// The delivery as it came: a stage that takes more than one kind of
    /// message (inventory: placed, cancel, step) reads it again here.
    pub body: Vec<u8>,
    /// Times this delivery already ran the logic and found the order moved
    /// under it: its downstream call may have been sent, so ask before
    /// sending it again.
    pub reruns: u32,
}

/// What a delivery is about, once decoded.
#[derive(Debug)]
pub enum Admission {
    /// Work on this order.
    Order(OrderId),
    /// Unreadable or invalid: park it as it came, never retry it.
    Malformed(Invalid),
}

/// What a delivery did to the store on its way in (under the order's
/// in-process lock, before its stage lease).
#[derive(Debug)]
pub enum Entry {
    /// Run the stage for the order.
    Proceed,
    /// Nothing more to do (a cancel kept until its order arrives):
    /// acknowledge.
    Absorbed,
    /// Valid but refused for the order (a conflicting duplicate): park it
    /// as it came, with a reason.
    Refused { reason: String, detail: String },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(#[from] orderflow_store::Error),
    #[error("broker: {0}")]
    Broker(#[from] orderflow_broker::Error),
}

/// A stage's own behaviour; the runner does everything around it.
pub trait StageLogic: Send + Sync + 'static {
    fn stage(&self) -> Stage;

    /// Decodes a delivery, writing nothing. The default reads a step
    /// message for this stage; the inventory stage also takes producers'
    /// messages here.
    fn admit(
        &self,
        delivery: &Incoming,
        env: &Env,
    ) -> impl Future<Output = Result<Admission, Error>> + Send {
        let _ = env;
        let stage = self.stage();
        let admission = match StepMessage::parse(delivery.body(), stage) {
            Ok(step) => Admission::Order(step.order_id),
            Err(invalid) => Admission::Malformed(invalid),
        };
        async move { Ok(admission) }
    }

    /// The stage's answer to an order whose store lost writes it had
    /// acknowledged ([`crate::lost`]): stopped for a person with `detail`.
    /// Stages with customers add their event to [`lost::escalation`].
    fn lost_writes(&self, detail: String) -> Effect {
        lost::escalation(detail)
    }

    /// What an admitted delivery writes before the order's stage lease is
    /// taken: the inventory stage creates the order or records a cancel
    /// here. The runner calls it under the order's in-process lock; writes
    /// that must not interleave across processes are one store script
    /// each. The default writes nothing.
    fn enter(
        &self,
        order_id: &OrderId,
        delivery: &Incoming,
        env: &Env,
    ) -> impl Future<Output = Result<Entry, Error>> + Send {
        let _ = (order_id, delivery, env);
        async { Ok(Entry::Proceed) }
    }

    /// The stage's work for an order whose lease this worker holds.
    fn run(
        &self,
        order: &OrderRecord,
        job: &Job,
        env: &Env,
    ) -> impl Future<Output = Result<Effect, Error>> + Send;
}

/// How many times a delivery re-reads and re-decides when other writers
/// keep moving its order, before it goes back to the queue.
const CAS_ATTEMPTS: u32 = 5;

/// Runs a [`StageLogic`] as a broker [`Handler`].
pub struct StageRunner<L> {
    logic: L,
    env: Env,
    locks: KeyedLocks,
    /// This process's lease token.
    token: String,
}

impl<L: StageLogic> StageRunner<L> {
    pub fn new(logic: L, env: Env) -> StageRunner<L> {
        StageRunner {
            logic,
            env,
            locks: KeyedLocks::default(),
            token: uuid::Uuid::new_v4().to_string(),
        }
    }

    pub fn env(&self) -> &Env {
        &self.env
    }

    async fn settle(
        &self,
        delivery: &Incoming,
        publisher: &Publisher,
    ) -> Result<Settlement, Error> {
        let stage = self.logic.stage();
        let admission = match too_large(delivery, self.env.policy.broker.max_message_bytes) {
            Some(invalid) => Admission::Malformed(invalid),
            None => self.logic.admit(delivery, &self.env).await?,
        };
        let order_id = match admission {
            Admission::Order(order_id) => order_id,
            Admission::Malformed(invalid) => {
                publisher
                    .publish(self.malformed(delivery, &invalid))
                    .await?;
                metrics::counter!("orderflow_malformed_total", "stage" => stage.as_str())
                    .increment(1);
                return Ok(Settlement::Ack);
            }
        };

        // One delivery per order at a time in this process, from its entry
        // on: an order and the cancel right behind it never enter together.
        let _in_process = self.locks.lock(&order_id).await;
        match self.logic.enter(&order_id, delivery, &self.env).await? {
            Entry::Proceed => {}
            Entry::Absorbed => return Ok(Settlement::Ack),
            Entry::Refused { reason, detail } => {
                let parked = Emission::Exception {
                    reason,
                    outcome: None,
                    detail: Some(detail),
                    keep_original: true,
                };
                self.publish_unrecorded(&order_id, delivery, &[parked], 0, (None, None), publisher)
                    .await?;
                return Ok(Settlement::Ack);
            }
        }
        let store = &self.env.store;
        let ttl = self.env.policy.lease.ttl;
        let step = record_step(delivery);
        let begun = patiently("begin delivery", || {
            store.begin_step(&order_id, stage, &self.token, ttl, &step)
        })
        .await?;
        let (lease, runs, order) = match begun {
            Begun::Busy => {
                // Another worker runs this order's stage right now: an
                // overlapping duplicate. Defer it, never run it alongside.
                metrics::counter!("orderflow_lease_conflicts_total", "stage" => stage.as_str())
                    .increment(1);
                let (body, meta) = (delivery.body().to_vec(), delivery.meta().clone());
                let queue = &self.env.spec.delay_queue(stage, 0).queue;
                publisher
                    .publish(Outgoing::to_queue(queue, body, meta))
                    .await?;
                return Ok(Settlement::Ack);
            }
            Begun::Recorded { lease, record } => {
                // Settled before, but the ack was lost: re-emit its messages.
                let published = self.publish_recorded(record, publisher).await;
                self.release_later(lease);
                published?;
                return Ok(Settlement::Ack);
            }
            Begun::Ready { lease, runs, order } => (lease, runs, order.map(|o| *o)),
        };
        let keeper = store.keep_alive(&lease, ttl);
        let held = Held {
            order_id: &order_id,
            step: &step,
            fencing: lease.fencing,
            runs,
        };
        let settled = self.settle_leased(&held, order, delivery, publisher).await;
        keeper.stop();
        match settled {
            // The state move dropped the lease in the same step.
            Ok((settlement, Released::ByMove)) => Ok(settlement),
            Ok((settlement, Released::No)) => {
                self.release_later(lease);
                Ok(settlement)
            }
            Err(err) => {
                self.release_later(lease);
                Err(err)
            }
        }
    }

    /// Releases the lease off the hot path; an unreleased lease expires by
    /// itself, and this process's own next delivery reuses it meanwhile.
    fn release_later(&self, lease: Lease) {
        let store = self.env.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.release(&lease).await {
                debug!(error = %err, "lease not released; it will expire");
            }
        });
    }

    async fn settle_leased(
        &self,
        held: &Held<'_>,
        mut order: Option<OrderRecord>,
        delivery: &Incoming,
        publisher: &Publisher,
    ) -> Result<(Settlement, Released), Error> {
        let store = &self.env.store;
        let (order_id, runs) = (held.order_id, held.runs);
        // The order's version when this message was sent (fleet messages).
        let sent_at = delivery.meta().order_version;
        for reruns in 0..CAS_ATTEMPTS {
            let Some(current) = order.take() else {
                if let Some(lost @ Lost::Order { sent_at }) = lost_writes(sent_at, None) {
                    self.record_lost_order(order_id, delivery, &lost, sent_at, runs, publisher)
                        .await?;
                    return Ok((Settlement::Ack, Released::No));
                }
                // No message of the fleet's names it (a producer's step
                // message, or an order purged by hand): a person must look.
                let parked = Emission::Exception {
                    reason: "order_not_found".into(),
                    outcome: None,
                    detail: Some("the store has no record of this order".into()),
                    keep_original: true,
                };
                self.publish_unrecorded(
                    order_id,
                    delivery,
                    &[parked],
                    runs,
                    (None, None),
                    publisher,
                )
                .await?;
                return Ok((Settlement::Ack, Released::No));
            };
            let job = self.job(delivery, &current, runs, reruns);
            let effect = match lost_writes(sent_at, Some(&current)) {
                Some(lost) => {
                    warn!(order_id = %order_id, ?lost, "the store is behind a message about this order: it lost writes");
                    self.logic.lost_writes(lost.detail(&job.message_id))
                }
                None => {
                    let effect = self.logic.run(&current, &job, &self.env).await?;
                    crash::point(crash::AFTER_DOWNSTREAM);
                    effect
                }
            };

            let sequence = match effect.transition {
                Some(_) => format!("v{}", current.version + 1),
                None => format!("r{runs}"),
            };
            let moving_to = effect.transition.as_ref().map(|plan| plan.to);
            let ctx =
                self.render_context(order_id, &job, sequence, (Some(current.version), moving_to));
            let rendered = render(&effect.emissions, &ctx, delivery.body());
            let released = match self.write(held, &current, &job, &effect, &rendered).await? {
                Written::Done if effect.transition.is_some() => Released::ByMove,
                Written::Done => Released::No,
                Written::AlreadyRecorded(recorded) => {
                    self.publish_recorded(recorded, publisher).await?;
                    return Ok((Settlement::Ack, Released::No));
                }
                Written::Moved { .. } => {
                    order = patiently("read order", || store.get_order(order_id)).await?;
                    continue;
                }
                Written::LeaseLost => return Ok((Settlement::Requeue, Released::No)),
            };
            crash::point(crash::AFTER_STATE_WRITTEN);
            self.publish_all(rendered, publisher).await?;
            crash::point(crash::BEFORE_ACK);
            return Ok((Settlement::Ack, released));
        }
        warn!(order_id = %order_id, "order kept moving under this delivery; requeueing it");
        Ok((Settlement::Requeue, Released::No))
    }

    async fn write(
        &self,
        held: &Held<'_>,
        order: &OrderRecord,
        job: &Job,
        effect: &Effect,
        rendered: &[Rendered],
    ) -> Result<Written, Error> {
        let writer = Writer {
            store: &self.env.store,
            stage: self.logic.stage(),
            fencing: held.fencing,
            step: held.step,
            actor: &self.env.actor,
            correlation_id: &job.correlation_id,
            policy_id: &self.env.policy_id,
        };
        let Some(plan) = &effect.transition else {
            if let Some(note) = &effect.note {
                patiently("write note", || writer.note(order, note)).await?;
            }
            return Ok(Written::Done);
        };
        let record = serde_json::to_value(rendered).expect("rendered messages serialize");
        Ok(patiently("write state", || {
            writer.transition(order, plan, record.clone())
        })
        .await?)
    }

    fn job(&self, delivery: &Incoming, order: &OrderRecord, runs: u32, reruns: u32) -> Job {
        let meta = delivery.meta().clone();
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let first_attempt_at_ms = first_attempt_ms(&meta, now_ms);
        Job {
            message_id: message_id(delivery),
            correlation_id: meta
                .correlation_id
                .clone()
                .unwrap_or_else(|| order.correlation_id.clone()),
            meta,
            runs,
            first_attempt_at_ms,
            elapsed: Duration::from_millis(
                u64::try_from(now_ms - first_attempt_at_ms).unwrap_or(0),
            ),
            body: delivery.body().to_vec(),
            reruns,
        }
    }

    fn render_context<'a>(
        &'a self,
        order_id: &'a OrderId,
        job: &'a Job,
        sequence: String,
        (version, moving_to): (Option<u64>, Option<OrderState>),
    ) -> RenderContext<'a> {
        RenderContext {
            spec: &self.env.spec,
            stage: self.logic.stage(),
            order_id,
            correlation_id: &job.correlation_id,
            policy_id: &self.env.policy_id,
            sequence,
            version,
            moving_to,
            runs: job.runs,
            first_attempt_at: job.first_attempt_at_ms,
            now: jiff::Timestamp::now(),
        }
    }

    /// Publishes messages that nothing recorded (no state move goes with
    /// them); a crash before the ack publishes them again, harmlessly.
    async fn publish_unrecorded(
        &self,
        order_id: &OrderId,
        delivery: &Incoming,
        emissions: &[Emission],
        runs: u32,
        order: (Option<u64>, Option<OrderState>),
        publisher: &Publisher,
    ) -> Result<(), Error> {
        let correlation_id = delivery
            .meta()
            .correlation_id
            .clone()
            .unwrap_or_else(|| message_id(delivery));
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let job = Job {
            message_id: message_id(delivery),
            correlation_id,
            meta: delivery.meta().clone(),
            runs,
            // A parked copy keeps the first attempt it came with (a
            // replayed step's), so its replay window does not start again.
            first_attempt_at_ms: first_attempt_ms(delivery.meta(), now_ms),
            elapsed: Duration::ZERO,
            body: Vec::new(),
            reruns: 0,
        };
        let ctx = self.render_context(
            order_id,
            &job,
            format!("m{}", short_hash(delivery.body())),
            order,
        );
        self.publish_all(render(emissions, &ctx, delivery.body()), publisher)
            .await
    }

    /// Records an order the store lost whole as escalated, then parks the
    /// delivery and announces the escalation (a crash in between records
    /// nothing twice: the order exists on the next try, and the delivery
    /// then finds it behind or resting).
    async fn record_lost_order(
        &self,
        order_id: &OrderId,
        delivery: &Incoming,
        lost: &Lost,
        sent_at: u64,
        runs: u32,
        publisher: &Publisher,
    ) -> Result<(), Error> {
        let detail = lost.detail(&message_id(delivery));
        warn!(order_id = %order_id, %detail, "the store lost this order");
        let record = LostOrder {
            sent_at_version: sent_at,
            reason: lost::REASON.into(),
            correlation_id: delivery
                .meta()
                .correlation_id
                .clone()
                .unwrap_or_else(|| message_id(delivery)),
            policy_id: self.env.policy_id.clone(),
            actor: self.env.actor.clone(),
            rule: lost::RULE.into(),
        };
        let store = &self.env.store;
        let recorded = patiently("record lost order", || {
            store.record_lost_order(order_id, &record)
        })
        .await?;
        if !recorded {
            // Another delivery about the order recorded it first.
            return Ok(());
        }
        let effect = self.logic.lost_writes(detail);
        self.publish_unrecorded(
            order_id,
            delivery,
            &effect.emissions,
            runs,
            (Some(sent_at), Some(OrderState::Escalated)),
            publisher,
        )
        .await
    }

    async fn publish_recorded(
        &self,
        recorded: serde_json::Value,
        publisher: &Publisher,
    ) -> Result<(), Error> {
        match serde_json::from_value::<Vec<Rendered>>(recorded) {
            Ok(rendered) => self.publish_all(rendered, publisher).await,
            Err(err) => {
                // Only a bug or tampering gets here; the state move stands.
                warn!(error = %err, "unreadable idempotency record; nothing re-emitted");
                Ok(())
            }
        }
    }

    async fn publish_all(
        &self,
        rendered: Vec<Rendered>,
        publisher: &Publisher,
    ) -> Result<(), Error> {
        let messages = rendered.into_iter().map(Rendered::into_outgoing);
        Ok(publish_confirmed(publisher, messages).await?)
    }

    fn malformed(&self, delivery: &Incoming, invalid: &Invalid) -> Outgoing {
        let stage = self.logic.stage();
        let problems: Vec<String> = invalid.problems.iter().map(ToString::to_string).collect();
        let mut meta = delivery.meta().clone().with_policy_id(&self.env.policy_id);
        meta.message_id.get_or_insert_with(|| message_id(delivery));
        meta.stage = Some(stage);
        meta.reason = Some("malformed".into());
        meta.class = Some(orderflow_core::FailureClass::Malformed);
        meta = meta.with_extra("validation-errors", problems.join("; "));
        Outgoing::to_queue(
            &self.env.spec.names().exception_queue(stage),
            delivery.body().to_vec(),
            meta,
        )
    }
}

/// A body past the policy's `broker.max_message_bytes` is never decoded:
/// prefetch times a huge body would take the worker's memory.
fn too_large(delivery: &Incoming, limit: usize) -> Option<Invalid> {
    let size = delivery.body().len();
    (size > limit).then(|| Invalid {
        problems: vec![Problem {
            path: String::new(),
            message: format!(
                "the message is {size} bytes, over broker.max_message_bytes ({limit}); it was not decoded"
            ),
        }],
    })
}

/// The delivery's hold on its order: the lease's fencing number, the
/// idempotency record's step name, and the stage's run count.
struct Held<'a> {
    order_id: &'a OrderId,
    step: &'a str,
    fencing: u64,
    runs: u32,
}

/// Whether the lease is already gone when the delivery is settled.
enum Released {
    ByMove,
    No,
}

impl<L: StageLogic> Handler for StageRunner<L> {
    async fn handle(&self, delivery: Incoming, publisher: &Publisher) -> Settlement {
        let stage = self.logic.stage();
        let in_flight = metrics::gauge!("orderflow_in_flight", "stage" => stage.as_str());
        in_flight.increment(1.0);
        // Redis unable to take the work anywhere in the delivery (a write
        // the logic makes included): the delivery is held and settled again
        // once Redis can, never requeued for it — a requeue is a delivery
        // attempt, and the delivery limit would dead-letter a healthy order.
        let settled = patiently("settle delivery", || async {
            match self.settle(&delivery, publisher).await {
                Err(Error::Store(err)) if err.class() == ErrorClass::Unavailable => Err(err),
                settled => Ok(settled),
            }
        })
        .await
        .unwrap_or_else(|err| Err(err.into()));
        in_flight.decrement(1.0);
        let settlement = match settled {
            Ok(settlement) => settlement,
            Err(err) => {
                warn!(stage = %stage, error = %err, "delivery not settled; it goes back to the queue");
                Settlement::Requeue
            }
        };
        let label = match settlement {
            Settlement::Ack => "ack",
            Settlement::Requeue => "requeue",
            Settlement::Reject => "reject",
        };
        metrics::counter!("orderflow_deliveries_total", "stage" => stage.as_str(), "settlement" => label).increment(1);
        settlement
    }
}

/// Epoch ms of the stage's first attempt: the one the delivery carries
/// (deferred, re-parked and replayed copies), else this one.
fn first_attempt_ms(meta: &Meta, now_ms: i64) -> i64 {
    meta.first_attempt_at.unwrap_or(now_ms).min(now_ms)
}

/// The message's id, or — for producers that send none — a hash of its
/// body, so a redelivered copy still finds its record.
fn message_id(delivery: &Incoming) -> String {
    delivery
        .meta()
        .message_id
        .clone()
        .unwrap_or_else(|| format!("body-{}", short_hash(delivery.body())))
}

fn record_step(delivery: &Incoming) -> String {
    format!("msg:{}", message_id(delivery))
}

fn short_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
