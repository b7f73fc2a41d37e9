//! What can go wrong, grouped by what the operator does about it
//! ([`Kind`]); every message says what to do next. One type for every
//! operator action, the exception queues' included, so `orderctl` and the
//! console each map it once.

use orderflow_core::message::Problem;
use std::fmt;

/// What an operator does about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request is wrong (a blank reason, an unknown order, a bad
    /// namespace, a body that breaks its contract): fix it and ask again.
    Invalid,
    /// The order's state makes the action unsafe: nothing was done.
    Refused,
    /// The action could not be carried out now (a service unreachable, a
    /// worker holding the order, a downstream not confirming): nothing or
    /// only a repeatable part was done; try again with the same action id.
    Failed,
}

impl Kind {
    /// `orderctl`'s exit code: 1 failed, 2 bad usage or input, 3 refused as
    /// unsafe (0 is success).
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Failed => 1,
            Kind::Invalid => 2,
            Kind::Refused => 3,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: the same request fails again.
    #[error("{0}")]
    Invalid(String),
    /// A message body that breaks its contract; nothing was sent.
    #[error("the message is invalid, nothing was sent:\n  {}", .problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n  "))]
    InvalidBody { problems: Vec<Problem> },
    /// A file of exported messages with lines that are not.
    #[error("{path}: nothing done; these lines are not exported messages:\n  {}", .problems.join("\n  "))]
    BadFile { path: String, problems: Vec<String> },
    /// The namespace has no such queue: a wrong `--namespace`, or a fleet
    /// that never started.
    #[error(
        "queue `{queue}` does not exist: is the namespace `{namespace}` right (--namespace, ORDERFLOW_NAMESPACE)? Workers declare their queues when they start"
    )]
    NoSuchQueue { queue: String, namespace: String },
    /// Messages asked for by id are not in the queue.
    #[error(
        "not in `{queue}` (read {read} of its messages): {}; `orderctl exceptions peek` lists what is there",
        .ids.join(", ")
    )]
    NotFound {
        queue: String,
        ids: Vec<String>,
        read: usize,
    },
    /// Unsafe in the order's state; nothing was changed.
    #[error("refused: {0}")]
    Refused(String),
    /// A worker holds the order's stage lease right now.
    #[error(
        "a worker holds order {order_id} right now (its {stage} lease); nothing was changed: try again in a few seconds"
    )]
    Busy {
        order_id: String,
        stage: orderflow_core::Stage,
    },
    /// The order moved while the action was being carried out.
    #[error(
        "order {order_id} moved while acting (it is now {state}); nothing was changed: look again with `orderctl order show {order_id}`"
    )]
    Moved {
        order_id: String,
        state: orderflow_core::OrderState,
    },
    /// Another export is writing the file right now.
    #[error(
        "{path}: an export is writing this file right now, so nothing was done: wait for it to finish, or export to another file"
    )]
    FileInUse { path: String },
    /// A downstream did not confirm what the action needs (a refund, a
    /// release, a status check).
    #[error("{0}")]
    Downstream(String),
    /// A service the command needs cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// Redis: unreachable or answering unexpectedly.
    #[error("{context}: {source}")]
    Store {
        context: String,
        #[source]
        source: orderflow_store::Error,
    },
    /// RabbitMQ: unreachable, or a publish not confirmed.
    #[error("{context}: {detail}")]
    Broker { context: String, detail: String },
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::Invalid(_)
            | Error::InvalidBody { .. }
            | Error::BadFile { .. }
            | Error::NoSuchQueue { .. }
            | Error::NotFound { .. } => Kind::Invalid,
            Error::Refused(_) => Kind::Refused,
            Error::Store { source, .. } => match source.class() {
                orderflow_store::ErrorClass::Invalid => Kind::Invalid,
                _ => Kind::Failed,
            },
            Error::Busy { .. }
            | Error::Moved { .. }
            | Error::FileInUse { .. }
            | Error::Downstream(_)
            | Error::Unavailable(_)
            | Error::Broker { .. }
            | Error::File { .. } => Kind::Failed,
        }
    }

    /// A store error, saying what was being done.
    pub(crate) fn store(
        context: impl fmt::Display,
    ) -> impl FnOnce(orderflow_store::Error) -> Error {
        let context = context.to_string();
        move |source| Error::Store { context, source }
    }

    /// A broker error with its causes, saying what was being done.
    pub(crate) fn broker(
        context: impl fmt::Display,
    ) -> impl FnOnce(orderflow_broker::Error) -> Error {
        let context = context.to_string();
        move |error| Error::Broker {
            context,
            detail: orderflow_broker::chain(&error),
        }
    }

    pub(crate) fn file(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.display().to_string();
        move |source| Error::File { path, source }
    }
}

/// The exception commands' store calls: `?` says which service failed.
impl From<orderflow_store::Error> for Error {
    fn from(source: orderflow_store::Error) -> Error {
        Error::store("the store")(source)
    }
}

/// The exception commands' broker calls: a name or header RabbitMQ would
/// not take is the request's fault; anything else is RabbitMQ's.
impl From<orderflow_broker::Error> for Error {
    fn from(error: orderflow_broker::Error) -> Error {
        match error {
            orderflow_broker::Error::Invalid { .. } => {
                Error::Invalid(orderflow_broker::chain(&error))
            }
            error => Error::broker("RabbitMQ")(error),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
