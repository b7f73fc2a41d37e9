//! Integration tests against a real Redis (`ORDERFLOW_TEST_REDIS_URL`,
//! default `redis://127.0.0.1:6379`). Each test works in its own random
//! namespace and deletes its keys when done; without Redis every test fails
//! and says how to start it.

mod common;

mod audit_index;
mod budget;
mod cancel;
mod connection;
mod fleet;
mod leases;
mod orders;
mod replay;
mod retention;
mod schedules;
