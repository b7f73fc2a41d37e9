//! # orderflow-ops
//!
//! What an operator does to a fleet, as a library, so `orderctl` and the
//! console apply exactly the same rules: every action needs a reason, is
//! idempotent by its action id, is refused when the order's state makes it
//! unsafe, and is written to the audit stream with the actor.
//!
//! Status, orders and manual recovery (docs/operators.md):
//! - [`target`]: [`Target`], the fleet worked on (namespace, Redis,
//!   RabbitMQ, policy, downstream APIs).
//! - [`mod@status`]: queues, delay tiers, exceptions by reason, orders by
//!   state, budgets and breakers, live workers, policy drift, pauses.
//! - [`redis_status`]: the Redis under the fleet, one node or a cluster's
//!   masters, slots and replicas, for the status.
//! - [`orders`]: one order in full (from the archive once it left Redis),
//!   orders by state.
//! - [`archive`]: the archive of finished orders: one order, or a time
//!   range as JSONL, each order once.
//! - [`actions`]: resolve a payment, retry a stage, cancel, unblock — under
//!   the order's lease, idempotent by action id; `plans` holds the rules
//!   deciding what each does in each state, or why it is refused.
//! - [`events`]: the customer events stream, read from any offset.
//! - [`stages`]: pausing and resuming a stage.
//! - [`error`]: [`Error`] and its [`Kind`] (invalid, refused, failed).

pub mod actions;
pub mod archive;
pub mod brokers;
pub mod error;
pub mod events;
pub mod exceptions;
pub mod orders;
mod plans;
pub mod redis_status;
pub mod stages;
pub mod status;
pub mod target;

pub use actions::{
    ActionInput, ActionKind, ActionReport, CancelBy, CancelPlan, Done, cancel, cancel_plan,
    new_action_id, resolve_payment, retry, unblock,
};
pub use error::{Error, Kind};
pub use orders::{
    ListFilter, NextStep, OrderList, OrderView, allowed_steps, list_orders, show_order,
};
pub use plans::{Decision, PaymentOutcome};
pub use redis_status::RedisStatus;
pub use stages::{PauseReport, ResumeReport, pause_stage, resume_stage};
pub use status::{Status, StatusOptions, status};
pub use target::{Settings, Target};
