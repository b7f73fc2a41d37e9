//! # orderflow-testkit
//!
//! What the workspace's tests share to run fleets as processes; a
//! dev-dependency only.
//!
//! Always there:
//! - [`services`]: the RabbitMQ and Redis the tests use.
//! - [`binaries`]: the fleet's binaries next to the test executable,
//!   rebuilt when older than their sources, never run stale.
//! - [`process`]: one child process with its output in a log file: kill -9,
//!   SIGTERM, restart, the log's tail.
//!
//! With the `fleet` feature, the end-to-end harness (`tests/`): the
//! simulator and the worker processes started as real processes on the
//! real RabbitMQ and Redis, each test in a namespace of its own, and the
//! invariants I1–I9 (docs/design.md §5) checked against the simulator's
//! ledger, the store and the audit streams:
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

pub mod binaries;
pub mod process;
pub mod redis;
pub mod services;

pub use services::{amqp_url, redis_url};

#[cfg(feature = "fleet")]
pub mod browser;
#[cfg(feature = "fleet")]
pub mod clusters;
#[cfg(feature = "fleet")]
pub mod edge;
#[cfg(feature = "fleet")]
pub mod fixtures;
#[cfg(feature = "fleet")]
pub mod fleet;
#[cfg(feature = "fleet")]
pub mod invariants;
#[cfg(feature = "fleet")]
pub mod observe;
#[cfg(feature = "fleet")]
pub mod orders;
#[cfg(feature = "fleet")]
mod quiet;

#[cfg(feature = "fleet")]
pub use browser::Browser;
#[cfg(feature = "fleet")]
pub use fleet::{Fleet, FleetOptions, WorkerKind};
#[cfg(feature = "fleet")]
pub use invariants::{Expectations, Snapshot, Violation};
#[cfg(feature = "fleet")]
pub use observe::{Event, Parked, reservation_states, tally};
#[cfg(feature = "fleet")]
pub use orders::{Cancel, Order};

#[cfg(feature = "fleet")]
pub use downstream_sim::Endpoint;
#[cfg(feature = "fleet")]
pub use downstream_sim::ledger::{
    Ledger, Payment, PaymentState, Reservation, ReservationState, Shipment, ShipmentState,
};
#[cfg(feature = "fleet")]
pub use orderflow_core::{OrderState, Stage};
#[cfg(feature = "fleet")]
pub use orderflow_store::{AuditEntry, OrderRecord};
