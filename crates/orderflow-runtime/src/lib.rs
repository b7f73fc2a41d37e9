//! # orderflow-runtime
//!
//! The stage loop every orderflow worker runs, on the broker and the store:
//! nothing is acknowledged before its effect is recorded, a crash at any
//! point is recovered by redelivery, duplicates are absorbed.
//!
//! # Layout
//! - [`runner`]: [`StageRunner`], the broker handler that settles every
//!   delivery in one place, around a stage's [`StageLogic`].
//! - [`effect`]: [`Effect`] — the state move and messages a logic asks for —
//!   and their rendering into messages with deterministic ids.
//! - [`step`]: the message a stage sends to the next.
//! - [`crash`]: the named crash points, as `fail` failpoints.
//! - [`keyed`]: one delivery per order at a time inside a process.
//! - [`lost`]: knowing that Redis lost writes it had acknowledged, from
//!   the order version every message carries.
//! - [`noop`]: a stage logic that calls nothing, for the benchmark and tests.
//! - `patience`: waiting out a Redis that cannot take the work (down, out
//!   of memory, read-only, busy) without acknowledging or requeueing
//!   anything; [`waiting_on_redis`] tells readiness.
//! - [`shutdown`]: first SIGTERM/SIGINT drains, a second exits.
//! - [`write`]: the one write path of an order — fenced compare-and-set
//!   with audit entry and idempotency record, then confirmed publishes —
//!   the runner's and every operator action's.

pub mod crash;
pub mod effect;
pub mod keyed;
pub mod lost;
pub mod noop;
mod patience;
pub mod runner;
pub mod shutdown;
pub mod step;
pub mod write;

pub use effect::{Effect, Emission, Planned};
pub use patience::waiting_on_redis;
pub use runner::{Admission, Entry, Env, Error, Job, StageLogic, StageRunner};
pub use step::{Check, StepMessage};
