//! # orderflow-fleet
//!
//! The whole fleet on one machine — the simulator, the three stage workers
//! and the reconciler as child processes in a fresh namespace of the local
//! RabbitMQ and Redis — under a load, and I1–I9 checked at the end. Kept
//! apart from `orderctl` so the operator's tool and the console link
//! neither the simulator nor the benchmark.
//!
//! - [`demo`]: the README's demo, a mixed load under a fault mix that makes
//!   every row of the stage table happen.
//! - [`bench`]: N orders on a fault profile, per policy: throughput,
//!   downstream calls, retries, exceptions, CPU and violations, beside the
//!   raw and ceiling baselines of `orderflow-bench`.
//! - [`chaos`]: a run during which workers are killed, the broker
//!   connections dropped and a private Redis restarted.
//! - [`local_fleet`]: what the three share: the namespace, the child
//!   processes, orders by state while they move, the snapshot at the end.

pub mod bench;
pub mod chaos;
pub mod demo;
pub mod local_fleet;
