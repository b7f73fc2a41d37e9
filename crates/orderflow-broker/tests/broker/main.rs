//! Integration tests against the real RabbitMQ (see `common` for how each
//! test gets its own namespace). One binary, so the tests run in parallel
//! and share the helpers.

mod closing;
mod common;
mod consuming;
mod delivery_limit;
mod pausing;
mod publishing;
mod reconnect;
mod shutdown;
mod streams;
mod topology;
