//! # orderflow-core
//!
//! The pure core every orderflow process shares. It does no I/O and has no
//! async: given the same inputs it always gives the same answer, so it is
//! tested without a broker, a store or a clock.
//!
//! # Layout
//! - [`message`]: the producer contract (`order.placed/v1`, `order.cancel/v1`)
//!   and validation that reports every problem with its path.
//! - [`state`]: the order state machine as a table, and its Mermaid diagram.
//! - [`stage`]: inventory → payment → shipping.
//! - [`outcome`]: the failure taxonomy (class + certainty) and the
//!   policy-driven classifier of downstream responses.
//! - [`policy`]: the fleet-wide policy file, its validation and content hash.
//! - [`decide`]: the stage policy engine, `decide(policy, context) -> Ruling`.

pub mod decide;
pub mod message;
pub mod outcome;
pub mod policy;
pub mod stage;
pub mod state;

pub use decide::{Compensation, Decision, DecisionContext, Ruling, decide};
pub use outcome::{Certainty, FailureClass, Outcome};
pub use policy::{Policy, PolicyId};
pub use stage::Stage;
pub use state::OrderState;
