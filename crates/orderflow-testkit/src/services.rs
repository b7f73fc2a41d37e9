//! The RabbitMQ and Redis the tests run on: the local ones, unless
//! `ORDERFLOW_TEST_AMQP_URL` or `ORDERFLOW_TEST_REDIS_URL` say otherwise.

/// RabbitMQ of the tests.
pub fn amqp_url() -> String {
    std::env::var("ORDERFLOW_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The shared Redis of the tests.
pub fn redis_url() -> String {
    std::env::var("ORDERFLOW_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}
