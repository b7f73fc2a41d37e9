//! The named points between "downstream call returned" and "ack sent" where
//! a crash must be recoverable by redelivery. Built with the `failpoints`
//! feature, each is a `fail` crate failpoint: `FAILPOINTS=after_state_written=return`
//! aborts the process there (as `kill -9` would); `=panic` unwinds the
//! handler, which the consumer settles as a requeue. Without the feature
//! they compile to nothing.

/// The downstream answered (and the logic decided); nothing is written yet.
pub const AFTER_DOWNSTREAM: &str = "after_downstream";
/// State, audit entry and idempotency record are written; nothing published.
pub const AFTER_STATE_WRITTEN: &str = "after_state_written";
/// The first message is published and confirmed, the rest are not.
pub const BETWEEN_PUBLISHES: &str = "between_publishes";
/// Everything is published and confirmed; the ack is not sent.
pub const BEFORE_ACK: &str = "before_ack";

pub const ALL: [&str; 4] = [
    AFTER_DOWNSTREAM,
    AFTER_STATE_WRITTEN,
    BETWEEN_PUBLISHES,
    BEFORE_ACK,
];

/// Crash here if the point is configured.
pub fn point(name: &str) {
    #[cfg(feature = "failpoints")]
    fail::fail_point!(name, |_| std::process::abort());
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}
