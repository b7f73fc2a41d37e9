//! `orderflow_ops::exceptions` against the real RabbitMQ and Redis of
//! `orderflow_testkit::services` (the local ones unless
//! `ORDERFLOW_TEST_AMQP_URL` / `ORDERFLOW_TEST_REDIS_URL` say otherwise),
//! each test in a namespace of its own.

mod common;

mod edits;
mod files;
mod governed;
mod reading;
mod replays;
