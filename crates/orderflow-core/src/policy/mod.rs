//! The fleet's policy: one versioned document that governs retry counts,
//! timeouts, delay tiers, escalation thresholds and error-code mapping for
//! every worker. Its content hash, the [`PolicyId`], is stamped on every
//! decision and audit entry, so two workers on different policies show up.
//!
//! A policy file overrides the built-in default key by key (tables merge,
//! lists replace); [`load`] checks the result for contradictions and
//! reports every problem with the key that causes it.

mod load;
mod validate;

pub use load::{PolicyError, PolicyProblem, from_source, parse};

use crate::outcome::ClassifyRule;
use crate::stage::Stage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

/// The built-in default policy, as TOML.
pub const DEFAULT_TOML: &str = include_str!("../../policy/default.toml");

/// How the fleet decides. Files always yield the stage-aware strategy; the
/// naive baseline exists only as a preset asked for by name.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Strategy {
    #[default]
    StageAware,
    /// Retry every failure `retries` times at once, then roll back every
    /// earlier stage: the baseline the benchmarks compare against.
    Naive { retries: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Not a file key: see [`Strategy`].
    #[serde(skip)]
    pub strategy: Strategy,
    pub broker: BrokerPolicy,
    pub lease: LeasePolicy,
    pub exceptions: ExceptionPolicy,
    pub fulfilment: FulfilmentPolicy,
    pub retention: RetentionPolicy,
    pub store: StorePolicy,
    pub stages: PerStage<StagePolicy>,
    pub downstreams: PerStage<DownstreamPolicy>,
}

/// One value per stage; each stage calls the downstream of the same name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerStage<T> {
    pub inventory: T,
    pub payment: T,
    pub shipping: T,
}

impl<T> PerStage<T> {
    pub fn get(&self, stage: Stage) -> &T {
        match stage {
            Stage::Inventory => &self.inventory,
            Stage::Payment => &self.payment,
            Stage::Shipping => &self.shipping,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerPolicy {
    pub delivery_limit: u32,
    /// The largest message body a worker decodes; a larger one is parked
    /// as malformed without being parsed.
    pub max_message_bytes: usize,
    /// Replicas of each quorum queue when it is created
    /// (`x-quorum-initial-group-size`); the broker caps it at its node count.
    pub quorum_replicas: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeasePolicy {
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionPolicy {
    #[serde(with = "humantime_serde")]
    pub replay_window: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FulfilmentPolicy {
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub stall_after: Duration,
}

/// How long what the fleet writes is kept: finished orders in Redis, the
/// fleet-wide Redis streams, and the RabbitMQ streams of the archive and of
/// the customer events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// A finished order (delivered, rejected, cancelled) stays in Redis
    /// this long after it finished, then is archived and its keys removed.
    /// Orders waiting for a person (blocked, escalated) are never removed.
    #[serde(with = "humantime_serde")]
    pub finished_for: Duration,
    /// The reconciler looks for finished orders past `finished_for` this
    /// often.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Fleet-wide Redis streams (the fleet audit copy, operators' fleet
    /// actions) drop entries older than this (`XADD … MINID`).
    #[serde(with = "humantime_serde")]
    pub streams_for: Duration,
    /// The archive stream (`{ns}.archive`) keeps records this long
    /// (`x-max-age`)...
    #[serde(with = "humantime_serde")]
    pub archive_max_age: Duration,
    /// ...and at most this many bytes (`x-max-length-bytes`).
    pub archive_max_bytes: u64,
    /// The customer events stream keeps events this long...
    #[serde(with = "humantime_serde")]
    pub events_max_age: Duration,
    /// ...and at most this many bytes.
    pub events_max_bytes: u64,
}

/// How hard the store tries to keep a write through a Redis failover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorePolicy {
    /// After each write of an order's state, wait until this many replicas
    /// acknowledged it (Redis `WAIT`); 0: do not wait. Narrows the window
    /// in which a failover loses a write the fleet acted on; does not close
    /// it.
    pub replica_acks: u32,
    /// The longest such a wait; a write acknowledged by fewer replicas in
    /// time stands, and the worker logs it.
    #[serde(with = "humantime_serde")]
    pub replica_ack_timeout: Duration,
}

/// What a stage does when its downstream is overloaded (breaker open or
/// retry budget spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overload {
    /// Park the message on the next delay tier and try later.
    Defer,
    /// Stop now with a clear, retryable reason.
    FailFast,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagePolicy {
    /// Delays of the stage's delay queues, shortest first. The n-th deferral
    /// of a message waits on tier n (the last tier repeats).
    #[serde(with = "duration_list")]
    pub delay_tiers: Vec<Duration>,
    /// Minimum wait before re-sending after an unknown outcome.
    #[serde(with = "humantime_serde")]
    pub in_flight_window: Duration,
    /// How long an unknown outcome may stay unknown before escalation.
    #[serde(with = "humantime_serde")]
    pub ambiguity_window: Duration,
    /// An order still in this stage after this long is escalated as stuck.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    pub overload: Overload,
    /// Re-send with the same idempotency key when the outcome stays unknown
    /// (otherwise park as pending and re-check by status query).
    pub retry_unknown: bool,
    pub status_poll: StatusPoll,
}

impl StagePolicy {
    /// The delay of the n-th deferral (0-based); the last tier repeats.
    pub fn tier(&self, deferrals: u32) -> (usize, Duration) {
        let last = self.delay_tiers.len().saturating_sub(1);
        let index = (deferrals as usize).min(last);
        (
            index,
            self.delay_tiers.get(index).copied().unwrap_or_default(),
        )
    }
}

/// In-process status queries after an unknown outcome, before parking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPoll {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamPolicy {
    /// The downstream honours idempotency keys.
    pub idempotent: bool,
    /// The downstream answers a by-key status query.
    pub status_query: bool,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long the downstream remembers an idempotency key.
    #[serde(with = "humantime_serde")]
    pub key_retention: Duration,
    /// Calls a worker process has in flight to it at most. The process
    /// adapts below this: halved when the downstream answers overloaded or
    /// rate limited, grown back by its other answers.
    pub max_in_flight: u32,
    pub retry: RetryPolicy,
    pub budget: BudgetPolicy,
    pub breaker: BreakerPolicy,
    pub classify: Vec<ClassifyRule>,
}

/// In-process retries of one delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    #[serde(with = "humantime_serde")]
    pub cap: Duration,
    /// Randomise each delay (full jitter) so a fleet does not retry in step.
    pub jitter: bool,
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, before jitter: exponential
    /// from `base`, capped at `cap`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// In-process retries may add at most `ratio` of the recent requests,
/// fleet-wide, plus `min_per_window` so a quiet system can still retry.
/// What the budget refuses is deferred; a deferred re-attempt is a new
/// request (its delay tier paces it, the breaker guards it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetPolicy {
    pub ratio: f64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub min_per_window: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerPolicy {
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Calls in the window before the rates count.
    pub min_calls: u32,
    pub failure_rate: f64,
    /// A call slower than this counts as slow.
    #[serde(with = "humantime_serde")]
    pub slow_call: Duration,
    pub slow_call_rate: f64,
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    /// Trial calls let through while half-open.
    pub half_open_calls: u32,
}

/// A policy's content hash: equal policies have equal ids on every machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PolicyId(String);

impl PolicyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Policy {
    /// The built-in default policy (parsed once per process).
    pub fn default_policy() -> Policy {
        static DEFAULT: LazyLock<Policy> = LazyLock::new(|| {
            parse(DEFAULT_TOML, "built-in default").expect("the built-in default policy is valid")
        });
        DEFAULT.clone()
    }

    /// The naive baseline: same timeouts, but blanket retries and rollback.
    pub fn naive() -> Policy {
        Policy {
            strategy: Strategy::Naive { retries: 3 },
            ..Policy::default_policy()
        }
    }

    /// A preset by name (`default` or `naive`), or `None`.
    pub fn preset(name: &str) -> Option<Policy> {
        match name {
            "default" => Some(Policy::default_policy()),
            "naive" => Some(Policy::naive()),
            _ => None,
        }
    }

    pub fn stage(&self, stage: Stage) -> &StagePolicy {
        self.stages.get(stage)
    }

    pub fn downstream(&self, stage: Stage) -> &DownstreamPolicy {
        self.downstreams.get(stage)
    }

    /// `sha256` of the canonical JSON form (strategy included), shortened:
    /// `pol-` + 12 hex digits. Struct fields serialize in declaration order,
    /// so the form is stable.
    pub fn id(&self) -> PolicyId {
        let canonical =
            serde_json::to_vec(&(&self.strategy, self)).expect("a policy always serializes");
        let digest = Sha256::digest(&canonical);
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        PolicyId(format!("pol-{hex}"))
    }

    /// The effective policy as TOML, defaults filled in.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a policy always serializes")
    }
}

/// Serde for a list of human-readable durations (`["1s", "5m"]`).
mod duration_list {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(list: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            list.iter()
                .map(|d| humantime::format_duration(*d).to_string()),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| {
                humantime::parse_duration(s).map_err(|e| D::Error::custom(format!("`{s}`: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_loads_and_has_a_stable_id() {
        let policy = Policy::default_policy();
        assert_eq!(policy.id(), Policy::default_policy().id());
        assert!(policy.id().as_str().starts_with("pol-"));
        assert_eq!(policy.id().as_str().len(), 16);
    }

    #[test]
    fn the_naive_preset_has_its_own_id() {
        assert_ne!(Policy::naive().id(), Policy::default_policy().id());
        assert!(Policy::preset("naive").is_some());
        assert!(Policy::preset("aggressive").is_none());
    }

    #[test]
    fn the_effective_policy_round_trips_through_toml() {
        let policy = Policy::default_policy();
        let shown = policy.to_toml();
        let reparsed = parse(&shown, "shown").expect("shown policy parses");
        assert_eq!(reparsed.id(), policy.id());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let retry = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(350),
            jitter: false,
        };
        assert_eq!(retry.backoff(1), Duration::from_millis(100));
        assert_eq!(retry.backoff(2), Duration::from_millis(200));
        assert_eq!(retry.backoff(3), Duration::from_millis(350));
        assert_eq!(retry.backoff(40), Duration::from_millis(350));
    }

    #[test]
    fn the_last_delay_tier_repeats() {
        let stage = Policy::default_policy().stages.payment;
        assert_eq!(stage.tier(0), (0, Duration::from_secs(2)));
        assert_eq!(stage.tier(99).0, stage.delay_tiers.len() - 1);
    }
}
