//! The one error type of this crate.
//!
//! Display never repeats the source; print the chain (`{:#}` with anyhow, or
//! [`chain`]) to see the broker's or the socket's own words.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker could not be reached or refused the login.
    #[error(
        "cannot connect to RabbitMQ at {url} (is it running? start it with `rabbitmq-server -detached`, and check the URL, user and password)"
    )]
    Unreachable {
        /// The URL with its password masked.
        url: String,
        #[source]
        source: lapin::Error,
    },

    /// A queue exists with arguments other than the ones being declared.
    #[error(
        "queue `{queue}` already exists with a different `{argument}` (broker said: {detail}); RabbitMQ cannot change it on an existing queue: {}, or restore the previous policy value",
        conflict_fix(queue)
    )]
    TopologyConflict {
        queue: String,
        argument: String,
        detail: String,
    },

    /// An exchange exists with another type or other flags.
    #[error(
        "exchange `{exchange}` already exists with different settings (broker said: {detail}); delete it (`rabbitmqadmin delete exchange name={exchange}`) or restore the previous settings"
    )]
    ExchangeConflict { exchange: String, detail: String },

    /// The broker refused to take responsibility for a message (for example
    /// a full queue with `reject-publish`): it was not stored.
    #[error(
        "the broker refused (nacked) the message to {} with routing key `{routing_key}`",
        shown(exchange)
    )]
    Nacked {
        exchange: String,
        routing_key: String,
    },

    /// A mandatory message matched no queue; the broker returned it.
    #[error(
        "no queue is bound for the message to {} with routing key `{routing_key}`: is the topology declared?",
        shown(exchange)
    )]
    Unroutable {
        exchange: String,
        routing_key: String,
    },

    /// The broker did not confirm a publish in time: the message may or may
    /// not be stored, so the caller must not ack its input.
    #[error(
        "the broker did not confirm the message to {} with routing key `{routing_key}` within {after:?}",
        shown(exchange)
    )]
    ConfirmTimeout {
        exchange: String,
        routing_key: String,
        after: Duration,
    },

    /// The broker stopped the consumer: its queue was deleted, or its
    /// channel or connection closed.
    #[error("the broker cancelled the consumer of queue `{queue}`")]
    ConsumerCancelled { queue: String },

    /// A queue that was expected to exist does not.
    #[error("queue `{queue}` does not exist")]
    QueueNotFound { queue: String },

    /// A name, header or property the broker would not accept.
    #[error("{what} {reason}")]
    Invalid { what: String, reason: String },

    /// Any other broker or connection failure.
    #[error("AMQP error during {context}")]
    Amqp {
        context: String,
        #[source]
        source: lapin::Error,
    },
}

impl Error {
    pub(crate) fn amqp(context: impl Into<String>) -> impl FnOnce(lapin::Error) -> Error {
        let context = context.into();
        move |source| Error::Amqp { context, source }
    }

    /// True when retrying the same call on a fresh connection may succeed.
    /// Conflicts and invalid input need an operator or a code change.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. }
            | Error::Amqp { .. }
            | Error::ConfirmTimeout { .. }
            | Error::ConsumerCancelled { .. }
            | Error::Nacked { .. } => true,
            Error::TopologyConflict { .. }
            | Error::ExchangeConflict { .. }
            | Error::Unroutable { .. }
            | Error::QueueNotFound { .. }
            | Error::Invalid { .. } => false,
        }
    }
}

/// How to replace a queue declared with other arguments without losing
/// what it holds: an exception queue's messages wait for a person, so they
/// are exported and imported around the delete.
fn conflict_fix(queue: &str) -> String {
    let delete = format!("`rabbitmqctl delete_queue {queue}`");
    match queue.strip_suffix(".exceptions") {
        Some(prefix) => {
            let stage = prefix.rsplit('.').next().unwrap_or(prefix);
            format!(
                "move its messages out with `orderctl exceptions export --stage {stage} --out FILE`, delete it with {delete}, start a worker (which declares it anew), then `orderctl exceptions import FILE`"
            )
        }
        None => format!("drain and delete it with {delete}"),
    }
}

fn shown(exchange: &str) -> String {
    if exchange.is_empty() {
        "the default exchange".to_owned()
    } else {
        format!("exchange `{exchange}`")
    }
}

/// An error and its sources, joined by `: ` (for logs without anyhow).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        // lapin's protocol errors repeat their inner text; skip exact repeats.
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_text_names_the_queue_the_argument_and_the_fix() {
        let err = Error::TopologyConflict {
            queue: "orderflow.inventory".into(),
            argument: "x-delivery-limit".into(),
            detail: "PRECONDITION_FAILED - inequivalent arg".into(),
        };
        let text = err.to_string();
        for part in [
            "orderflow.inventory",
            "x-delivery-limit",
            "PRECONDITION_FAILED",
            "rabbitmqctl delete_queue orderflow.inventory",
            "restore the previous policy value",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }

    #[test]
    fn an_exception_queue_is_exported_and_imported_around_the_delete() {
        let err = Error::TopologyConflict {
            queue: "orderflow.payment.exceptions".into(),
            argument: "x-delivery-limit".into(),
            detail: "PRECONDITION_FAILED - inequivalent arg".into(),
        };
        let text = err.to_string();
        for part in [
            "orderctl exceptions export --stage payment --out FILE",
            "rabbitmqctl delete_queue orderflow.payment.exceptions",
            "orderctl exceptions import FILE",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }

    #[test]
    fn the_default_exchange_is_named_in_words() {
        let err = Error::Unroutable {
            exchange: String::new(),
            routing_key: "nowhere".into(),
        };
        assert!(err.to_string().contains("the default exchange"));
    }

    #[test]
    fn chain_joins_sources() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Error::Unreachable {
            url: "amqp://guest:***@localhost".into(),
            source: io.into(),
        };
        let text = chain(&err);
        assert!(text.starts_with("cannot connect to RabbitMQ at amqp://guest:***@localhost"));
        assert!(text.ends_with("refused"), "{text}");
    }
}
