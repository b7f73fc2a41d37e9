//! Reading a policy: TOML text → key-by-key merge over the default →
//! typed [`Policy`] → validation. Every step names the key at fault.

use super::{DEFAULT_TOML, Policy, validate};
use std::fmt;
use toml::{Table, Value};

/// One problem in a policy, at a dotted key (`stages.payment.delay_tiers`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyProblem {
    pub key: String,
    pub why: String,
}

impl PolicyProblem {
    pub fn new(key: impl Into<String>, why: impl Into<String>) -> PolicyProblem {
        PolicyProblem {
            key: key.into(),
            why: why.into(),
        }
    }
}

/// A policy that cannot be used, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The file (or `built-in default`) the policy came from.
    pub source_name: String,
    pub problems: Vec<PolicyProblem>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: invalid policy ({n} problem{})",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  {}: {}", problem.key, problem.why)?;
        }
        Ok(())
    }
}

/// Parses policy TOML over the default and checks it.
pub fn parse(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
    let fail = |problems: Vec<PolicyProblem>| PolicyError {
        source_name: source_name.to_owned(),
        problems,
    };
    let overrides: Table = text.parse().map_err(|e: toml::de::Error| {
        fail(vec![PolicyProblem::new(
            "(syntax)",
            e.to_string().trim_end(),
        )])
    })?;
    let mut merged: Table = DEFAULT_TOML
        .parse()
        .expect("the default policy is valid TOML");

    let mut problems = Vec::new();
    unknown_keys("", &overrides, &merged, &mut problems);
    if !problems.is_empty() {
        return Err(fail(problems));
    }
    merge(&mut merged, overrides);

    let policy: Policy = serde_path_to_error::deserialize(Value::Table(merged)).map_err(|e| {
        let key = e.path().to_string();
        fail(vec![PolicyProblem::new(key, e.into_inner().to_string())])
    })?;
    let problems = validate::validate(&policy);
    if problems.is_empty() {
        Ok(policy)
    } else {
        Err(fail(problems))
    }
}

/// A policy named the way operators name one (`orderctl policy check`'s
/// argument, a worker's `ORDERFLOW_POLICY`): `default` and `naive` are
/// presets, anything else is a file path. The naive preset can only be had
/// by name, never from a file.
///
/// The core does no I/O, so the caller hands in how to read a file
/// (`std::fs::read_to_string`); a read failure is reported like any other
/// problem of the policy.
pub fn from_source(
    spec: &str,
    read_file: impl FnOnce(&str) -> std::io::Result<String>,
) -> Result<Policy, PolicyError> {
    if let Some(policy) = Policy::preset(spec) {
        return Ok(policy);
    }
    let text = read_file(spec).map_err(|e| PolicyError {
        source_name: spec.to_owned(),
        problems: vec![PolicyProblem::new(
            "(file)",
            format!("cannot read it ({e}); give a policy file or a preset name: default, naive"),
        )],
    })?;
    parse(&text, spec)
}

/// Every key in `overrides` must exist in the default: a typo must not
/// silently leave a setting at its default.
fn unknown_keys(
    prefix: &str,
    overrides: &Table,
    defaults: &Table,
    problems: &mut Vec<PolicyProblem>,
) {
    for (key, value) in overrides {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (defaults.get(key), value) {
            (None, _) => {
                let known: Vec<&str> = defaults.keys().map(String::as_str).collect();
                problems.push(PolicyProblem::new(
                    path,
                    format!("unknown key; expected one of: {}", known.join(", ")),
                ));
            }
            (Some(Value::Table(default)), Value::Table(table)) => {
                unknown_keys(&path, table, default, problems);
            }
            _ => {}
        }
    }
}

/// Tables merge key by key; any other value (lists included) replaces.
fn merge(base: &mut Table, overrides: Table) {
    for (key, value) in overrides {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(base_table)), Value::Table(table)) => merge(base_table, table),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<(String, String)> {
        match parse(text, "test.toml") {
            Ok(_) => vec![],
            Err(e) => e.problems.into_iter().map(|p| (p.key, p.why)).collect(),
        }
    }

    #[test]
    fn an_empty_file_is_the_default_policy() {
        let policy = parse("", "empty.toml").unwrap();
        assert_eq!(policy.id(), Policy::default_policy().id());
    }

    #[test]
    fn a_file_overrides_one_key_and_keeps_the_rest() {
        let policy = parse("[stages.payment]\nambiguity_window = \"45m\"\n", "p.toml").unwrap();
        assert_eq!(policy.stages.payment.ambiguity_window.as_secs(), 45 * 60);
        assert_eq!(
            policy.stages.payment.delay_tiers,
            Policy::default_policy().stages.payment.delay_tiers
        );
        assert_ne!(policy.id(), Policy::default_policy().id());
    }

    #[test]
    fn every_unknown_key_is_named() {
        let found = problems("strategy = \"naive\"\n[stages.paymnt]\nx = 1\n[lease]\nttl_s = 3\n");
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["lease.ttl_s", "stages.paymnt", "strategy"]);
        assert!(
            found[1]
                .1
                .contains("expected one of: inventory, payment, shipping")
        );
    }

    #[test]
    fn a_wrong_type_names_its_key() {
        let found = problems("[downstreams.payment.retry]\nmax_attempts = \"three\"\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "downstreams.payment.retry.max_attempts");
    }

    #[test]
    fn a_bad_duration_names_its_key() {
        let found = problems("[stages.inventory]\ndelay_tiers = [\"1s\", \"soon\"]\n");
        assert_eq!(found[0].0, "stages.inventory.delay_tiers");
        assert!(found[0].1.contains("soon"), "{}", found[0].1);
    }

    #[test]
    fn a_syntax_error_is_reported_not_panicked() {
        let found = problems("[stages\n");
        assert_eq!(found[0].0, "(syntax)");
    }

    #[test]
    fn a_source_is_a_preset_name_or_a_file() {
        let unread = |_: &str| -> std::io::Result<String> { panic!("a preset reads no file") };
        assert_eq!(
            from_source("naive", unread).unwrap().id(),
            Policy::naive().id()
        );
        let policy = from_source("p.toml", |path| {
            assert_eq!(path, "p.toml");
            Ok("[broker]\ndelivery_limit = 7\n".to_owned())
        })
        .unwrap();
        assert_eq!(policy.broker.delivery_limit, 7);
    }

    #[test]
    fn an_unreadable_source_says_what_to_give() {
        let err = from_source("missing.toml", |_| {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        })
        .unwrap_err();
        assert_eq!(err.source_name, "missing.toml");
        assert_eq!(err.problems[0].key, "(file)");
        assert!(err.problems[0].why.contains("preset name: default, naive"));
    }

    #[test]
    fn the_error_names_the_file() {
        let err = parse("[broker]\ndelivery_limit = 1\n", "fleet.toml").unwrap_err();
        assert!(err.to_string().starts_with("fleet.toml: invalid policy"));
    }
}
