//! What can go wrong, grouped by what the operator does about it
//! ([`Kind`]); every message says what to do next.

use std::fmt;

/// What an operator does about an [`Error`]; `orderctl` maps it to its
/// exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request is wrong (a blank reason, an unknown order, a bad
    /// namespace): fix it and ask again.
    Invalid,
    /// The order's state makes the action unsafe: nothing was done.
    Refused,
    /// The action could not be carried out now (a service unreachable, a
    /// worker holding the order, a downstream not confirming): nothing or
    /// only a repeatable part was done; try again with the same action id.
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: the same request fails again.
    #[error("{0}")]
    Invalid(String),
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
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::Invalid(_) => Kind::Invalid,
            Error::Refused(_) => Kind::Refused,
            Error::Store { source, .. } => match source.class() {
                orderflow_store::ErrorClass::Invalid => Kind::Invalid,
                _ => Kind::Failed,
            },
            Error::Busy { .. }
            | Error::Moved { .. }
            | Error::Downstream(_)
            | Error::Unavailable(_)
            | Error::Broker { .. } => Kind::Failed,
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
