//! `orderflow_ops::exceptions` against the real RabbitMQ
//! (`ORDERFLOW_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`)
//! and Redis (`ORDERFLOW_REDIS_URL`, default `redis://127.0.0.1:6379`),
//! each test in a namespace of its own.

mod common;

mod edits;
mod files;
mod governed;
mod reading;
mod replays;
