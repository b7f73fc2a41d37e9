//! Integration tests: each test starts the simulator in-process on an
//! ephemeral port with its own profile and talks HTTP to it.

mod binary;
mod common;
mod control;
mod faults;
mod idempotency;
mod inventory;
mod payment;
mod shipping;
