//! The store's errors, grouped by what the caller should do about them.

use orderflow_core::message::OrderId;
use orderflow_core::state::TransitionError;
use orderflow_core::{OrderState, Stage};
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// What a caller does about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Redis cannot be reached right now. Wait (see [`crate::Store::ping`])
    /// and redo the step; a write may or may not have landed, so re-read
    /// before deciding again.
    Unavailable,
    /// Someone else moved the order or took a newer lease: re-read and
    /// decide again, or leave the order to its new owner.
    Conflict,
    /// The request itself is wrong; the same request fails again.
    Invalid,
    /// The store holds or returned something this code cannot read: a bug
    /// or tampering, for a person to look at.
    Fault,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis is unavailable: {0}")]
    Unavailable(#[source] RedisError),
    #[error("redis error: {0}")]
    Redis(#[source] RedisError),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(
        "order {order_id} changed underneath: expected version {expected}, \
         found version {actual_version} in {actual_state}"
    )]
    Conflict {
        order_id: OrderId,
        expected: u64,
        actual_version: u64,
        actual_state: OrderState,
    },
    #[error(
        "stale fencing number {fencing} for the {stage} lease of order {order_id}: \
         the latest issued is {current}"
    )]
    StaleFence {
        order_id: OrderId,
        stage: Stage,
        fencing: u64,
        current: u64,
    },
    #[error("order {0} not found")]
    NotFound(OrderId),
    #[error("invalid namespace `{0}`: use 1-64 characters of [A-Za-z0-9_.-]")]
    InvalidNamespace(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("unreadable data at `{key}`: {detail}")]
    Corrupt { key: String, detail: String },
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Unavailable(_) => ErrorClass::Unavailable,
            Error::Conflict { .. } | Error::StaleFence { .. } => ErrorClass::Conflict,
            Error::Transition(_)
            | Error::NotFound(_)
            | Error::InvalidNamespace(_)
            | Error::InvalidArgument(_) => ErrorClass::Invalid,
            Error::Redis(_) | Error::Corrupt { .. } => ErrorClass::Fault,
        }
    }

    pub(crate) fn corrupt(key: &str, detail: impl Into<String>) -> Error {
        Error::Corrupt {
            key: key.to_owned(),
            detail: detail.into(),
        }
    }
}

impl From<RedisError> for Error {
    fn from(err: RedisError) -> Error {
        // The connection manager reconnects in the background but fails the
        // command that hit the broken connection; everything that can heal by
        // waiting is `Unavailable`.
        let transient = err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || matches!(
                err.kind(),
                ErrorKind::ClusterConnectionNotFound
                    | ErrorKind::Server(
                        ServerErrorKind::BusyLoading
                            | ServerErrorKind::TryAgain
                            | ServerErrorKind::ClusterDown
                            | ServerErrorKind::MasterDown
                            | ServerErrorKind::ReadOnly
                    )
            );
        if transient {
            Error::Unavailable(err)
        } else {
            Error::Redis(err)
        }
    }
}
