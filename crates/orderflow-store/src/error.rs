//! The store's errors, grouped by what the caller should do about them.

use orderflow_core::message::OrderId;
use orderflow_core::state::TransitionError;
use orderflow_core::{OrderState, Stage};
use redis::{ErrorKind, RedisError};

/// What a caller does about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Redis cannot be reached right now, or answers that it cannot take
    /// the work now (out of memory, read-only, busy, loading, …). Wait and
    /// redo the step; a write may or may not have landed, so re-read before
    /// deciding again.
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

/// Error codes of a Redis that answers but cannot take the work now, each
/// of which heals by waiting (memory freed or `maxmemory` raised, a replica
/// promoted, a script finished, a dataset loaded, a cluster or master back,
/// replicas caught up, the disk writable again).
const WAIT_CODES: [&str; 9] = [
    "OOM",
    "READONLY",
    "BUSY",
    "LOADING",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "NOREPLICAS",
    "MISCONF",
];

impl From<RedisError> for Error {
    fn from(err: RedisError) -> Error {
        // The connection manager reconnects in the background but fails the
        // command that hit the broken connection; that, and a server that
        // says it cannot take the work now, heal by waiting: `Unavailable`.
        // (A script's error keeps the code of the command that failed in it.)
        let transient = err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.kind() == ErrorKind::ClusterConnectionNotFound
            || err.code().is_some_and(|code| WAIT_CODES.contains(&code));
        if transient {
            Error::Unavailable(err)
        } else {
            Error::Redis(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(line: &str) -> Error {
        let reply =
            redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).expect("a RESP error line");
        Error::from(reply.extract_error().expect_err("an error reply"))
    }

    #[test]
    fn a_redis_that_cannot_write_now_is_waited_for() {
        for line in [
            "OOM command not allowed when used memory > 'maxmemory'. script: 1f2e, on @user_script:12.",
            "READONLY You can't write against a read only replica.",
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
            "LOADING Redis is loading the dataset in memory",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
            "NOREPLICAS Not enough good replicas to write.",
            "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
        ] {
            assert_eq!(
                server_error(line).class(),
                ErrorClass::Unavailable,
                "{line}"
            );
        }
    }

    #[test]
    fn other_server_errors_are_faults() {
        for line in [
            "ERR Error running script: attempt to compare nil with number",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "NOSCRIPT No matching script.",
        ] {
            assert_eq!(server_error(line).class(), ErrorClass::Fault, "{line}");
        }
    }
}
