//! # orderflow-ops
//!
//! What an operator does to a fleet, as a library, so `orderctl` and the
//! console apply exactly the same rules: every action needs a reason, is
//! idempotent by its action id, is refused when the order's state makes it
//! unsafe, and is written to the audit stream with the actor.
