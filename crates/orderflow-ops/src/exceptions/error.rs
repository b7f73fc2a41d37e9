//! The one error type of the exception commands, with the class of failure
//! that tells a caller (and `orderctl`'s exit code) what went wrong.

use orderflow_core::message::Problem;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The operation failed (broker, store, file system): exit 1.
    Failed,
    /// The request or its input is wrong: exit 2.
    BadInput,
    /// Refused because acting would be unsafe: exit 3.
    Unsafe,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", orderflow_broker::chain(.0))]
    Broker(#[from] orderflow_broker::Error),

    #[error("the store: {0}")]
    Store(#[from] orderflow_store::Error),

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

    /// A message body that breaks its contract; nothing was sent.
    #[error("the message is invalid, nothing was sent:\n  {}", .problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid { problems: Vec<Problem> },

    /// A file of exported messages with lines that are not.
    #[error("{path}: nothing done; these lines are not exported messages:\n  {}", .problems.join("\n  "))]
    BadFile { path: String, problems: Vec<String> },

    /// Another export is writing the file right now.
    #[error(
        "{path}: an export is writing this file right now, so nothing was done: wait for it to finish, or export to another file"
    )]
    FileInUse { path: String },

    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// Anything else wrong with the request.
    #[error("{0}")]
    Usage(String),

    /// Refused: acting would be unsafe.
    #[error("{0}")]
    Refused(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Broker(orderflow_broker::Error::Invalid { .. })
            | Error::Store(
                orderflow_store::Error::InvalidArgument(_)
                | orderflow_store::Error::InvalidNamespace(_),
            )
            | Error::NoSuchQueue { .. }
            | Error::NotFound { .. }
            | Error::Invalid { .. }
            | Error::BadFile { .. }
            | Error::Usage(_) => ErrorKind::BadInput,
            Error::Refused(_) => ErrorKind::Unsafe,
            Error::Broker(_) | Error::Store(_) | Error::FileInUse { .. } | Error::File { .. } => {
                ErrorKind::Failed
            }
        }
    }

    pub(crate) fn file(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.display().to_string();
        move |source| Error::File { path, source }
    }
}
