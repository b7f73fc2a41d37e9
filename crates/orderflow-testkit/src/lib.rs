//! # orderflow-testkit
//!
//! What the workspace's tests share to run fleets as processes; a
//! dev-dependency only.
//!
//! - [`services`]: the RabbitMQ and Redis the tests use.
//! - [`binaries`]: the fleet's binaries next to the test executable,
//!   rebuilt when older than their sources, never run stale.
//! - [`process`]: one child process with its output in a log file: kill -9,
//!   SIGTERM, restart, the log's tail.

pub mod binaries;
pub mod process;
pub mod services;
