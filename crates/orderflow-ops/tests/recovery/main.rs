//! The operators' library against the real RabbitMQ and Redis
//! (`ORDERFLOW_TEST_AMQP_URL`, `ORDERFLOW_TEST_REDIS_URL`; defaults on
//! 127.0.0.1) and the downstream simulator in this process: status, order
//! views, the manual actions and stage pauses. Each test has a namespace
//! of its own (`common`).

mod common;

mod actions;
mod archive;
mod reading;
mod stages;
