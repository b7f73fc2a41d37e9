//! Contradictions a policy must not contain. Each check explains itself in
//! the message, because the person reading it is fixing a file at 3 a.m.

use super::{DownstreamPolicy, Policy, PolicyProblem, StagePolicy};
use crate::outcome::{CallKind, Certainty, FailureClass};
use crate::stage::Stage;
use std::time::Duration;

/// The smallest `broker.max_message_bytes` that takes every message of the
/// contract (docs/messages.md).
const MIN_MESSAGE_BYTES: usize = 4096;

/// `store.replica_acks` past this asks for more replicas than a Redis
/// master is given in practice.
const MAX_REPLICA_ACKS: u32 = 5;
const MIN_ACK_TIMEOUT: Duration = Duration::from_millis(1);
const MAX_ACK_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn validate(policy: &Policy) -> Vec<PolicyProblem> {
    let mut problems = Vec::new();
    let mut problem = |key: String, why: String| problems.push(PolicyProblem::new(key, why));

    if policy.lease.ttl.is_zero() {
        problem("lease.ttl".into(), "must be longer than zero".into());
    }
    if policy.fulfilment.stall_after < policy.fulfilment.poll_interval {
        problem(
            "fulfilment.stall_after".into(),
            format!(
                "({}) is shorter than fulfilment.poll_interval ({}): a shipment would be called stalled before it is first polled",
                show(policy.fulfilment.stall_after),
                show(policy.fulfilment.poll_interval)
            ),
        );
    }

    let most_attempts = Stage::ALL
        .iter()
        .map(|&s| (s, policy.downstream(s).retry.max_attempts))
        .max_by_key(|&(_, n)| n);
    if let Some((stage, attempts)) = most_attempts
        && policy.broker.delivery_limit <= attempts
    {
        problem(
            "broker.delivery_limit".into(),
            format!(
                "({}) must exceed the most attempts the policy makes for one delivery (downstreams.{stage}.retry.max_attempts = {attempts}); otherwise the broker dead-letters messages the policy still means to retry",
                policy.broker.delivery_limit
            ),
        );
    }

    if policy.store.replica_acks > MAX_REPLICA_ACKS {
        problem(
            "store.replica_acks".into(),
            format!(
                "({}) is more replicas than any Redis master here has (at most {MAX_REPLICA_ACKS}): every write would wait its whole replica_ack_timeout",
                policy.store.replica_acks
            ),
        );
    }
    if policy.store.replica_acks > 0
        && !(MIN_ACK_TIMEOUT..=MAX_ACK_TIMEOUT).contains(&policy.store.replica_ack_timeout)
    {
        problem(
            "store.replica_ack_timeout".into(),
            format!(
                "({}) must be between {} and {} when store.replica_acks is set: Redis reads a 0 ms WAIT as \"wait for ever\", and every write of the process waits up to this long while a replica is down",
                show(policy.store.replica_ack_timeout),
                show(MIN_ACK_TIMEOUT),
                show(MAX_ACK_TIMEOUT)
            ),
        );
    }

    if policy.broker.max_message_bytes < MIN_MESSAGE_BYTES {
        problem(
            "broker.max_message_bytes".into(),
            format!(
                "({}) must be at least {MIN_MESSAGE_BYTES}: the contract's own messages are up to a few kilobytes",
                policy.broker.max_message_bytes
            ),
        );
    }

    if policy.broker.quorum_replicas == 0 || i32::try_from(policy.broker.quorum_replicas).is_err() {
        problem(
            "broker.quorum_replicas".into(),
            format!(
                "({}) must be at least 1 (and fit the broker's 32-bit signed argument): every queue needs a replica to live on",
                policy.broker.quorum_replicas
            ),
        );
    }
    for (key, why) in check_retention(policy) {
        problem(format!("retention.{key}"), why);
    }

    for stage in Stage::ALL {
        let sp = policy.stage(stage);
        let dp = policy.downstream(stage);
        for (key, why) in check_stage(stage, sp, dp) {
            problem(format!("stages.{stage}.{key}"), why);
        }
        for (key, why) in check_downstream(policy, stage, sp, dp) {
            problem(format!("downstreams.{stage}.{key}"), why);
        }
    }
    problems
}

fn check_stage(stage: Stage, sp: &StagePolicy, dp: &DownstreamPolicy) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match sp.delay_tiers.first() {
        None => out.push(("delay_tiers".into(), "must list at least one delay".into())),
        Some(first) => {
            if first.is_zero() {
                out.push((
                    "delay_tiers".into(),
                    "delays must be longer than zero".into(),
                ));
            }
            if let Some(pair) = sp.delay_tiers.windows(2).find(|w| w[0] >= w[1]) {
                out.push((
                    "delay_tiers".into(),
                    format!(
                        "must be strictly increasing, but {} is followed by {} (one queue per tier; equal or shrinking tiers are a typo)",
                        show(pair[0]),
                        show(pair[1])
                    ),
                ));
            }
            if sp.ambiguity_window < *first {
                out.push((
                    "ambiguity_window".into(),
                    format!(
                        "({}) is shorter than the first re-check (delay_tiers[0] = {}): an unknown outcome would be escalated before it is ever re-checked",
                        show(sp.ambiguity_window),
                        show(*first)
                    ),
                ));
            }
        }
    }
    if sp.deadline < sp.ambiguity_window {
        out.push((
            "deadline".into(),
            format!(
                "({}) is shorter than ambiguity_window ({}): the stuck-order sweep would escalate orders the policy is still waiting on",
                show(sp.deadline),
                show(sp.ambiguity_window)
            ),
        ));
    }
    if sp.retry_unknown && !dp.idempotent && !dp.status_query {
        out.push((
            "retry_unknown".into(),
            format!(
                "is true, but downstreams.{stage} is neither idempotent nor has a status query: re-sending after an unknown outcome could repeat the side effect (set retry_unknown = false to escalate instead)"
            ),
        ));
    }
    if sp.status_poll.limit > 0 && !dp.status_query {
        out.push((
            "status_poll.limit".into(),
            format!(
                "is {}, but downstreams.{stage}.status_query is false: there is nothing to poll",
                sp.status_poll.limit
            ),
        ));
    }
    out
}

fn check_downstream(
    policy: &Policy,
    stage: Stage,
    sp: &StagePolicy,
    dp: &DownstreamPolicy,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut check = |ok: bool, key: &str, why: String| {
        if !ok {
            out.push((key.to_owned(), why));
        }
    };
    check(
        !dp.connect_timeout.is_zero(),
        "connect_timeout",
        "must be longer than zero".into(),
    );
    check(
        !dp.request_timeout.is_zero(),
        "request_timeout",
        "must be longer than zero".into(),
    );
    let worst = worst_delivery_time(sp, dp);
    check(
        worst <= policy.lease.ttl,
        "request_timeout",
        format!(
            "× retry.max_attempts ({}) plus backoff and status polls lets one delivery take {} — longer than lease.ttl ({}), so a second worker could take the lease mid-call",
            dp.retry.max_attempts,
            show(worst),
            show(policy.lease.ttl)
        ),
    );
    check(
        dp.retry.max_attempts >= 1,
        "retry.max_attempts",
        "must be at least 1 (the first attempt counts)".into(),
    );
    check(
        dp.retry.base <= dp.retry.cap,
        "retry.base",
        format!(
            "({}) is longer than retry.cap ({})",
            show(dp.retry.base),
            show(dp.retry.cap)
        ),
    );
    check(
        (0.0..=1.0).contains(&dp.budget.ratio),
        "budget.ratio",
        format!("({}) must be between 0 and 1", dp.budget.ratio),
    );
    check(
        !dp.budget.window.is_zero(),
        "budget.window",
        "must be longer than zero".into(),
    );
    check(
        !dp.breaker.window.is_zero(),
        "breaker.window",
        "must be longer than zero".into(),
    );
    check(
        dp.breaker.min_calls >= 1,
        "breaker.min_calls",
        "must be at least 1".into(),
    );
    check(
        dp.max_in_flight >= 1,
        "max_in_flight",
        "must be at least 1 (no call could be made)".into(),
    );
    check(
        dp.breaker.half_open_calls >= 1,
        "breaker.half_open_calls",
        "must be at least 1".into(),
    );
    for (key, rate) in [
        ("breaker.failure_rate", dp.breaker.failure_rate),
        ("breaker.slow_call_rate", dp.breaker.slow_call_rate),
    ] {
        check(
            rate > 0.0 && rate <= 1.0,
            key,
            format!("({rate}) must be above 0 and at most 1"),
        );
    }
    check(
        !dp.classify.is_empty(),
        "classify",
        "must hold at least one rule".into(),
    );
    for (i, rule) in dp.classify.iter().enumerate() {
        check(
            !(rule.class == FailureClass::Success && rule.certainty == Certainty::NotApplied),
            &format!("classify[{i}]"),
            "class success with certainty not_applied contradicts itself".into(),
        );
    }
    // Only rules written for status queries speak of the operation a query
    // asks about (orderflow_core::outcome::classify): without one that says
    // "done", no query could ever find an operation applied.
    check(
        !dp.status_query
            || dp.classify.iter().any(|rule| {
                rule.call == Some(CallKind::Status)
                    && rule.class == FailureClass::Success
                    && rule.certainty == Certainty::Applied
            }),
        "classify",
        "has no rule for a status query that finds the operation done (status_query is true): add { call = \"status\", status = \"2xx\", class = \"success\", certainty = \"applied\" }".into(),
    );

    // A key must outlive every way the fleet can still use it: re-checks
    // until the ambiguity window, the stuck sweep, and operator replays.
    let (horizon, horizon_key) = [
        (
            sp.ambiguity_window,
            format!("stages.{stage}.ambiguity_window"),
        ),
        (sp.deadline, format!("stages.{stage}.deadline")),
        (
            policy.exceptions.replay_window,
            "exceptions.replay_window".to_owned(),
        ),
    ]
    .into_iter()
    .max_by_key(|(d, _)| *d)
    .expect("three candidates");
    check(
        dp.key_retention >= horizon,
        "key_retention",
        format!(
            "({}) is shorter than {horizon_key} ({}): a retry or replay could reuse a key the downstream has forgotten and repeat the side effect",
            show(dp.key_retention),
            show(horizon)
        ),
    );
    out
}

/// The longest the reconciler may still act on an order after its last
/// move: a stage's deadline or ambiguity window, or a shipment's stall
/// threshold. With the key name that sets it.
fn reconciler_horizon(policy: &Policy) -> (Duration, String) {
    let mut candidates = vec![(
        policy.fulfilment.stall_after,
        "fulfilment.stall_after".to_owned(),
    )];
    for stage in Stage::ALL {
        let sp = policy.stage(stage);
        candidates.push((sp.deadline, format!("stages.{stage}.deadline")));
        candidates.push((
            sp.ambiguity_window,
            format!("stages.{stage}.ambiguity_window"),
        ));
    }
    candidates
        .into_iter()
        .max_by_key(|(d, _)| *d)
        .expect("at least one candidate")
}

/// A finished order's keys must outlive everything that can still reach
/// it: a replay from an exception queue, a downstream that still remembers
/// its keys (a retry with the same key must find the order's record), and
/// the reconciler's asks. Gone earlier, a late message would find no order
/// and be taken for proof that Redis lost it (escalated as lost).
fn check_retention(policy: &Policy) -> Vec<(String, String)> {
    let retention = &policy.retention;
    let mut out = Vec::new();
    let mut needs = vec![
        (
            policy.exceptions.replay_window,
            "exceptions.replay_window".to_owned(),
        ),
        reconciler_horizon(policy),
    ];
    for stage in Stage::ALL {
        needs.push((
            policy.downstream(stage).key_retention,
            format!("downstreams.{stage}.key_retention"),
        ));
    }
    let (need, need_key) = needs
        .into_iter()
        .max_by_key(|(d, _)| *d)
        .expect("at least one need");
    if retention.finished_for < need {
        out.push((
            "finished_for".into(),
            format!(
                "({}) is shorter than {need_key} ({}): a finished order's keys would be removed while a message, replay or re-check for it can still arrive, and it would look lost",
                show(retention.finished_for),
                show(need)
            ),
        ));
    }
    for (key, value) in [
        ("sweep_interval", retention.sweep_interval),
        ("streams_for", retention.streams_for),
        ("archive_max_age", retention.archive_max_age),
        ("events_max_age", retention.events_max_age),
    ] {
        if value.is_zero() {
            out.push((key.into(), "must be longer than zero".into()));
        }
    }
    // Operators and the runbook read the fleet audit for what happened to
    // an order for as long as the order itself is kept.
    if retention.streams_for < retention.finished_for {
        out.push((
            "streams_for".into(),
            format!(
                "({}) is shorter than retention.finished_for ({}): the fleet audit would forget orders Redis still holds",
                show(retention.streams_for),
                show(retention.finished_for)
            ),
        ));
    }
    // The archive is where an expired order is read from: it must keep a
    // record at least as long as Redis kept the order.
    if retention.archive_max_age < retention.finished_for {
        out.push((
            "archive_max_age".into(),
            format!(
                "({}) is shorter than retention.finished_for ({}): the archive would drop orders sooner than Redis",
                show(retention.archive_max_age),
                show(retention.finished_for)
            ),
        ));
    }
    for (key, value) in [
        ("archive_max_bytes", retention.archive_max_bytes),
        ("events_max_bytes", retention.events_max_bytes),
    ] {
        if value < MIN_STREAM_BYTES {
            out.push((
                key.into(),
                format!(
                    "({value}) must be at least {MIN_STREAM_BYTES}: a stream keeps whole segments"
                ),
            ));
        }
    }
    out
}

/// The smallest stream size worth declaring: RabbitMQ keeps a stream in
/// segments and only drops whole ones.
const MIN_STREAM_BYTES: u64 = 1_000_000;

/// The longest one delivery can spend calling the downstream: every attempt
/// timing out, every backoff at its cap-limited size, every status poll.
fn worst_delivery_time(sp: &StagePolicy, dp: &DownstreamPolicy) -> Duration {
    let per_call = dp.connect_timeout + dp.request_timeout;
    let attempts = per_call * dp.retry.max_attempts;
    let backoffs: Duration = (1..dp.retry.max_attempts)
        .map(|n| dp.retry.backoff(n))
        .sum();
    let polls = (per_call + sp.status_poll.interval) * sp.status_poll.limit;
    attempts + backoffs + polls
}

fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use crate::policy::parse;

    fn keys(text: &str) -> Vec<String> {
        match parse(text, "t.toml") {
            Ok(_) => vec![],
            Err(e) => e.problems.into_iter().map(|p| p.key).collect(),
        }
    }

    #[test]
    fn retrying_unknown_outcomes_needs_idempotency_or_a_status_query() {
        let text = "[downstreams.inventory]\nidempotent = false\nstatus_query = false\n[stages.inventory.status_poll]\nlimit = 0\n";
        assert_eq!(keys(text), ["stages.inventory.retry_unknown"]);
        let fixed = format!("{text}[stages.inventory]\nretry_unknown = false\n");
        assert!(keys(&fixed).is_empty());
    }

    #[test]
    fn a_delivery_longer_than_the_lease_is_refused() {
        let text = "[downstreams.payment]\nrequest_timeout = \"20s\"\n";
        assert_eq!(keys(text), ["downstreams.payment.request_timeout"]);
    }

    #[test]
    fn delay_tiers_must_be_non_empty_and_increasing() {
        assert!(
            keys("[stages.shipping]\ndelay_tiers = []\n")
                .contains(&"stages.shipping.delay_tiers".to_owned())
        );
        assert_eq!(
            keys("[stages.shipping]\ndelay_tiers = [\"5s\", \"5s\"]\n"),
            ["stages.shipping.delay_tiers"]
        );
    }

    #[test]
    fn the_ambiguity_window_must_cover_the_first_recheck() {
        assert_eq!(
            keys("[stages.payment]\nambiguity_window = \"1s\"\n"),
            ["stages.payment.ambiguity_window"]
        );
    }

    #[test]
    fn a_message_size_limit_below_the_contracts_messages_is_refused() {
        assert_eq!(
            keys("[broker]\nmax_message_bytes = 100\n"),
            ["broker.max_message_bytes"]
        );
        assert!(keys("[broker]\nmax_message_bytes = 65536\n").is_empty());
    }

    #[test]
    fn a_queue_needs_at_least_one_replica() {
        assert_eq!(
            keys("[broker]\nquorum_replicas = 0\n"),
            ["broker.quorum_replicas"]
        );
        assert!(keys("[broker]\nquorum_replicas = 1\n").is_empty());
    }

    #[test]
    fn the_delivery_limit_must_exceed_the_policy_attempts() {
        assert_eq!(
            keys("[broker]\ndelivery_limit = 3\n"),
            ["broker.delivery_limit"]
        );
    }

    #[test]
    fn key_retention_must_outlive_retries_and_replays() {
        assert_eq!(
            keys("[downstreams.payment]\nkey_retention = \"1h\"\n"),
            ["downstreams.payment.key_retention"]
        );
    }

    #[test]
    fn the_deadline_must_not_cut_the_ambiguity_window_short() {
        assert_eq!(
            keys("[stages.inventory]\ndeadline = \"10m\"\n"),
            ["stages.inventory.deadline"]
        );
    }

    #[test]
    fn rates_and_rules_are_checked() {
        let text = "[downstreams.shipping]\nbudget = { ratio = 1.5, window = \"10s\", min_per_window = 3 }\nclassify = [{ status = \"2xx\", class = \"success\", certainty = \"not_applied\" }, { call = \"status\", status = \"2xx\", class = \"success\", certainty = \"applied\" }]\n";
        assert_eq!(
            keys(text),
            [
                "downstreams.shipping.budget.ratio",
                "downstreams.shipping.classify[0]"
            ]
        );
    }

    #[test]
    fn a_status_query_needs_a_rule_of_its_own_that_finds_the_operation_done() {
        let shared =
            "classify = [{ status = \"2xx\", class = \"success\", certainty = \"applied\" }]\n";
        assert_eq!(
            keys(&format!("[downstreams.shipping]\n{shared}")),
            ["downstreams.shipping.classify"]
        );
        // Without status queries there is nothing to answer.
        let text = format!(
            "[downstreams.shipping]\nstatus_query = false\n{shared}[stages.shipping]\nretry_unknown = false\nstatus_poll = {{ interval = \"1s\", limit = 0 }}\n"
        );
        assert_eq!(keys(&text), Vec::<String>::new());
    }

    #[test]
    fn finished_orders_must_outlive_replays_keys_and_the_reconciler() {
        let (ok, problems) = match parse("[retention]\nfinished_for = \"12h\"\n", "t.toml") {
            Ok(_) => (true, vec![]),
            Err(e) => (false, e.problems),
        };
        assert!(!ok);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "retention.finished_for");
        assert!(
            problems[0].why.contains("exceptions.replay_window")
                || problems[0].why.contains("key_retention"),
            "{}",
            problems[0].why
        );
        // Shorter needs everywhere: a short retention is fine.
        let short = "[exceptions]\nreplay_window = \"2s\"\n[fulfilment]\nstall_after = \"3s\"\n\
            [retention]\nfinished_for = \"5s\"\nstreams_for = \"5s\"\n";
        let short = format!(
            "{short}{}",
            ["inventory", "payment", "shipping"]
                .map(|s| format!(
                    "[stages.{s}]\nambiguity_window = \"2s\"\ndeadline = \"3s\"\n[downstreams.{s}]\nkey_retention = \"4s\"\n"
                ))
                .concat()
        );
        assert!(keys(&short).is_empty(), "{:?}", keys(&short));
        // The reconciler's horizon counts too.
        let long_stall = short.replace("stall_after = \"3s\"", "stall_after = \"10s\"");
        assert_eq!(keys(&long_stall), ["retention.finished_for"]);
    }

    #[test]
    fn the_archive_and_fleet_streams_keep_at_least_the_orders_retention() {
        assert_eq!(
            keys("[retention]\narchive_max_age = \"1h\"\nstreams_for = \"1h\"\n"),
            ["retention.streams_for", "retention.archive_max_age"]
        );
    }

    #[test]
    fn replica_acks_need_a_bounded_wait() {
        assert!(keys("[store]\nreplica_acks = 1\n").is_empty());
        assert_eq!(keys("[store]\nreplica_acks = 9\n"), ["store.replica_acks"]);
        assert_eq!(
            keys("[store]\nreplica_acks = 1\nreplica_ack_timeout = \"0s\"\n"),
            ["store.replica_ack_timeout"]
        );
        assert_eq!(
            keys("[store]\nreplica_acks = 1\nreplica_ack_timeout = \"1m\"\n"),
            ["store.replica_ack_timeout"]
        );
        // Off: the timeout is not used, so not checked.
        assert!(keys("[store]\nreplica_ack_timeout = \"0s\"\n").is_empty());
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let text = "[broker]\ndelivery_limit = 1\n[stages.payment]\ndelay_tiers = []\n[downstreams.payment]\nkey_retention = \"1m\"\n";
        assert_eq!(keys(text).len(), 3);
    }
}
