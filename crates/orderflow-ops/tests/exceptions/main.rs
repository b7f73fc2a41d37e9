//! `orderflow_ops::exceptions` against the real RabbitMQ
//! (`ORDERFLOW_AMQP_URL`) and Redis (`ORDERFLOW_REDIS_URL`), by default the
//! local ones (`orderflow_settings::DEFAULT_AMQP_URL`, `DEFAULT_REDIS_URL`),
//! each test in a namespace of its own.

mod common;

mod edits;
mod files;
mod governed;
mod reading;
mod replays;
