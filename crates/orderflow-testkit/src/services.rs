//! The RabbitMQ and Redis the tests run on: the local ones, unless
//! `ORDERFLOW_TEST_AMQP_URL` or `ORDERFLOW_TEST_REDIS_URL` say otherwise;
//! connecting to them, or failing the test saying how to start them.

/// RabbitMQ of the tests.
pub fn amqp_url() -> String {
    std::env::var("ORDERFLOW_TEST_AMQP_URL")
        .unwrap_or_else(|_| orderflow_settings::DEFAULT_AMQP_URL.into())
}

/// The shared Redis of the tests.
pub fn redis_url() -> String {
    std::env::var("ORDERFLOW_TEST_REDIS_URL")
        .unwrap_or_else(|_| orderflow_settings::DEFAULT_REDIS_URL.into())
}

/// A connection to the tests' RabbitMQ; fails the test at once, saying how
/// to start it, when it cannot be reached.
pub async fn connect_broker() -> orderflow_broker::Connection {
    orderflow_broker::connect(&amqp_url()).await.unwrap_or_else(|e| {
        panic!(
            "these tests need RabbitMQ at {}: {}\nstart it (rabbitmq-server -detached) or set ORDERFLOW_TEST_AMQP_URL",
            orderflow_broker::without_password(&amqp_url()),
            orderflow_broker::chain(&e)
        )
    })
}

/// Namespace `ns` of the store on the tests' Redis; fails the test at once,
/// saying how to start it, when it cannot be reached.
pub async fn connect_store(ns: &str) -> orderflow_store::Store {
    orderflow_store::Store::connect(&redis_url(), ns)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "these tests need Redis at {}: {e}\nstart it (redis-server --daemonize yes) or set ORDERFLOW_TEST_REDIS_URL",
                redis_url()
            )
        })
}
