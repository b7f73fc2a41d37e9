//! # orderflow-downstream
//!
//! The fleet's side of the three downstream APIs it does not own.
//!
//! # Layout
//! - [`key`]: deterministic idempotency keys (order + stage + operation).
//! - [`transport`]: one API over HTTP — timeouts from the policy, every
//!   result classified into class + certainty by the policy's rules,
//!   metrics per downstream, endpoint and class.
//! - [`breaker`]: a circuit breaker per downstream and process.
//! - [`limit`]: the calls in flight per downstream and process, an adaptive
//!   limit that backs off when the provider says it is overloaded.
//! - [`api`]: typed calls of the inventory, payment and shipping APIs.
//! - [`resolve`]: one logical operation run to a decision — in-process
//!   retries within the fleet-wide retry budget (the [`RetryBudget`] the
//!   store keeps), status queries and polls; [`resolve_on`], the ruling
//!   it reaches if the downstream answers one way, for dry runs.

pub mod api;
pub mod breaker;
pub mod key;
pub mod limit;
pub mod resolve;
pub mod transport;

pub use api::{InventoryApi, PaymentApi, ShippingApi};
pub use key::{IdempotencyKey, Operation};
pub use resolve::{Resolution, RetryBudget, Spend, Start, resolve, resolve_on};
pub use transport::{Answer, Downstream, OFF_CONTRACT};
