//! # orderflow-e2e
//!
//! The end-to-end harness: the simulator and the worker processes started as
//! real processes on the real RabbitMQ and Redis, each test in a namespace of
//! its own, and the invariants I1–I9 (docs/design.md §5) checked against the
//! simulator's ledger, the store and the audit streams.
//!
//! # Layout
//! - [`binaries`], [`process`]: from `orderflow-testkit`, the binaries
//!   next to the test executable (rebuilt when stale) and one child process
//!   with its output in a log file.
//! - [`redis`]: a private append-only `redis-server` a test may crash and
//!   restart.
//! - [`clusters`]: the 3-node RabbitMQ cluster of `scripts/clusters.sh`:
//!   its URL list, each queue's leader and replicas, killing and starting
//!   a node.
//! - [`fleet`]: [`Fleet`], the processes of one namespace, their control
//!   (kill, restart, drop broker connections, restart Redis) and the clean-up.
//! - [`orders`]: producer messages (`order.placed/v1`, `order.cancel/v1`) with
//!   sensible defaults, and publishing them (or raw bytes).
//! - [`observe`]: reading the ledger, orders, audit entries, exception
//!   queues and customer events, and waiting for orders to settle.
//! - [`invariants`]: I1–I9 as [`Violation`]s.
//! - [`fixtures`]: the policy files and simulator profiles of the scenarios.
//! - [`edge`]: for the edge suite: `redis-cli` on the private Redis, a
//!   worker's `/readyz` and `/metrics`.
//! - [`browser`]: [`Browser`], headless Chromium through a `chromedriver` of
//!   the test's own (WebDriver): open, wait for, fill, click, read, and
//!   screenshots in `target/console-screenshots/`.
//!
//! A test starts a [`Fleet`], publishes, waits, asserts what its scenario is
//! about, and ends with [`Fleet::assert_invariants`]. Dropping the fleet
//! kills its processes, deletes its queues and exchanges and purges its
//! Redis keys; a failing test prints the tail of every process's log first.

pub mod browser;
pub mod clusters;
pub mod edge;
pub mod fixtures;
pub mod fleet;
pub mod invariants;
pub mod observe;
pub mod orders;
mod quiet;
pub mod redis;

pub use orderflow_testkit::services::{amqp_url, redis_url};
pub use orderflow_testkit::{binaries, process};

pub use browser::Browser;
pub use fleet::{Fleet, FleetOptions, WorkerKind};
pub use invariants::{Expectations, Snapshot, Violation};
pub use observe::{Event, Parked, reservation_states, tally};
pub use orders::{Cancel, Order};

pub use downstream_sim::Endpoint;
pub use downstream_sim::ledger::{
    Ledger, Payment, PaymentState, Reservation, ReservationState, Shipment, ShipmentState,
};
pub use orderflow_core::{OrderState, Stage};
pub use orderflow_store::{AuditEntry, OrderRecord};
