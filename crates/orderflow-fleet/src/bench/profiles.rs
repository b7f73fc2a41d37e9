//! The fault profiles a bench runs (`tests/profiles/`, compiled in, or a
//! file of one's own), what comes with each — the policy `--policy
//! default` means for it, and how the bench runs it (a publish rate, timed
//! phases) — and the policies a bench compares.

use downstream_sim::Profile;
use orderflow_core::Policy;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The stage-aware policy every profile runs as `--policy default` unless
/// it ships its own: the built-in default's behaviour on a bench's time
/// scale.
pub const FAST_POLICY: &str = include_str!("../../../../tests/profiles/policy.toml");

/// A profile of `tests/profiles/`, with its companions.
struct Shipped {
    name: &'static str,
    profile: &'static str,
    policy: Option<&'static str>,
    bench: Option<&'static str>,
}

const SHIPPED: [Shipped; 6] = [
    Shipped {
        name: "happy",
        profile: include_str!("../../../../tests/profiles/happy.toml"),
        policy: None,
        bench: None,
    },
    Shipped {
        name: "flaky",
        profile: include_str!("../../../../tests/profiles/flaky.toml"),
        policy: None,
        bench: None,
    },
    Shipped {
        name: "ambiguous",
        profile: include_str!("../../../../tests/profiles/ambiguous.toml"),
        policy: None,
        bench: None,
    },
    Shipped {
        name: "outage",
        profile: include_str!("../../../../tests/profiles/outage.toml"),
        policy: None,
        bench: Some(include_str!("../../../../tests/profiles/outage.bench.toml")),
    },
    Shipped {
        name: "overload",
        profile: include_str!("../../../../tests/profiles/overload.toml"),
        policy: None,
        bench: None,
    },
    Shipped {
        name: "non_idempotent",
        profile: include_str!("../../../../tests/profiles/non_idempotent.toml"),
        policy: Some(include_str!(
            "../../../../tests/profiles/non_idempotent.policy.toml"
        )),
        bench: None,
    },
];

/// A profile ready to run.
#[derive(Debug, Clone)]
pub struct BenchProfile {
    pub name: String,
    /// The profile file's text, as the simulator is started with it.
    pub text: String,
    pub profile: Profile,
    /// What `--policy default` runs with this profile (policy TOML).
    pub default_policy: String,
    /// Where that policy comes from, for the report.
    pub default_policy_source: String,
    pub plan: Plan,
}

/// How a bench runs a profile (`NAME.bench.toml`).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Orders published per second, at most.
    pub rate: Option<u32>,
    pub phases: Vec<Phase>,
}

/// A change of the simulator's profile at a moment of the run.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Since the first publish.
    pub at: Duration,
    pub name: String,
    /// The body of `PUT /_faults`: the profile with the phase's changes,
    /// without a seed (so the simulator's RNG carries on).
    pub body: Value,
}

/// The names of the shipped profiles.
pub fn shipped_names() -> Vec<&'static str> {
    SHIPPED.iter().map(|s| s.name).collect()
}

/// A shipped profile by name, or a profile file (with `STEM.policy.toml`
/// and `STEM.bench.toml` beside it when they exist). Every problem found is
/// in the error.
pub fn load(spec: &str) -> Result<BenchProfile, String> {
    if let Some(shipped) = SHIPPED.iter().find(|s| s.name == spec) {
        return assemble(
            spec,
            shipped.profile,
            shipped
                .policy
                .map(|p| (p.to_owned(), format!("tests/profiles/{spec}.policy.toml"))),
            shipped.bench,
        );
    }
    let path = Path::new(spec);
    if !path.is_file() {
        return Err(format!(
            "no profile `{spec}`: name one of {} or give a profile file",
            shipped_names().join(", ")
        ));
    }
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let text = read(path)?;
    let companion = |suffix: &str| -> PathBuf {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        path.with_file_name(format!("{stem}.{suffix}.toml"))
    };
    let policy_path = companion("policy");
    let policy = if policy_path.is_file() {
        Some((read(&policy_path)?, policy_path.display().to_string()))
    } else {
        None
    };
    let bench_path = companion("bench");
    let bench = if bench_path.is_file() {
        Some(read(&bench_path)?)
    } else {
        None
    };
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(spec)
        .to_owned();
    assemble(&name, &text, policy, bench.as_deref())
}

fn assemble(
    name: &str,
    text: &str,
    policy: Option<(String, String)>,
    bench: Option<&str>,
) -> Result<BenchProfile, String> {
    let profile = Profile::from_toml(text).map_err(|e| format!("profile `{name}`: {e}"))?;
    let (default_policy, default_policy_source) = policy.unwrap_or_else(|| {
        (
            FAST_POLICY.to_owned(),
            "tests/profiles/policy.toml".to_owned(),
        )
    });
    orderflow_core::policy::parse(&default_policy, &default_policy_source)
        .map_err(|e| e.to_string())?;
    let plan = match bench {
        Some(bench) => parse_plan(bench, text)
            .map_err(|problems| format!("{name}.bench.toml:\n  {}", problems.join("\n  ")))?,
        None => Plan::default(),
    };
    Ok(BenchProfile {
        name: name.to_owned(),
        text: text.to_owned(),
        profile,
        default_policy,
        default_policy_source,
        plan,
    })
}

/// Reads a `NAME.bench.toml` against the profile (TOML) its phases change;
/// every problem is named.
pub fn parse_plan(text: &str, base_profile: &str) -> Result<Plan, Vec<String>> {
    let value: Value = toml::from_str(text).map_err(|e| vec![format!("TOML syntax: {e}")])?;
    let base: Value =
        toml::from_str(base_profile).map_err(|e| vec![format!("the profile: {e}")])?;
    let mut problems = Vec::new();
    let mut plan = Plan::default();
    let Some(table) = value.as_object() else {
        return Err(vec!["expected a table".into()]);
    };
    for (key, value) in table {
        match key.as_str() {
            "rate" => match value.as_u64().and_then(|r| u32::try_from(r).ok()) {
                Some(rate) if rate > 0 => plan.rate = Some(rate),
                _ => problems.push(format!("rate: {value} is not a whole number above 0")),
            },
            "phase" => match value.as_array() {
                Some(phases) => {
                    for (i, phase) in phases.iter().enumerate() {
                        match parse_phase(phase, &base) {
                            Ok(phase) => plan.phases.push(phase),
                            Err(found) => problems
                                .extend(found.into_iter().map(|p| format!("phase[{i}].{p}"))),
                        }
                    }
                }
                None => problems.push("phase: expected an array of tables ([[phase]])".into()),
            },
            other => problems.push(format!("{other}: unknown key; expected rate or phase")),
        }
    }
    if plan.phases.windows(2).any(|w| w[0].at >= w[1].at) {
        problems.push("phase: phases must be listed in the order of their `at`".into());
    }
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems)
    }
}

fn parse_phase(phase: &Value, base: &Value) -> Result<Phase, Vec<String>> {
    let mut problems = Vec::new();
    let Some(table) = phase.as_object() else {
        return Err(vec!["expected a table".into()]);
    };
    let mut at = None;
    let mut name = String::new();
    let mut merged = base.clone();
    for (key, value) in table {
        match key.as_str() {
            "at" => match value.as_str().map(humantime::parse_duration) {
                Some(Ok(duration)) => at = Some(duration),
                _ => problems.push(format!("at: {value} is not a duration such as \"5s\"")),
            },
            "name" => match value.as_str() {
                Some(text) => name = text.to_owned(),
                None => problems.push("name: expected a string".into()),
            },
            "profile" if value.is_object() => merge(&mut merged, value),
            "profile" => problems.push("profile: expected a table".into()),
            other => problems.push(format!(
                "{other}: unknown key; expected at, name or profile"
            )),
        }
    }
    if at.is_none() && !table.contains_key("at") {
        problems.push("at: missing".into());
    }
    let mut body = Value::Null;
    match Profile::from_value(&merged) {
        Ok(profile) => {
            body = serde_json::to_value(&profile).expect("a profile serializes");
            if let Some(fields) = body.as_object_mut() {
                fields.remove("seed");
            }
        }
        Err(e) => problems.extend(e.problems.into_iter().map(|p| format!("profile: {p}"))),
    }
    match at {
        Some(at) if problems.is_empty() => Ok(Phase { at, name, body }),
        _ => Err(problems),
    }
}

/// Merges `over` into `into`: tables key by key, anything else replaced.
fn merge(into: &mut Value, over: &Value) {
    match (into, over) {
        (Value::Object(into), Value::Object(over)) => {
            for (key, value) in over {
                match into.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        into.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (into, over) => *into = over.clone(),
    }
}

/// A policy a bench run uses.
#[derive(Debug, Clone)]
pub struct PolicyChoice {
    /// `default`, `naive`, or the file's name.
    pub label: String,
    /// Where it comes from, for the report.
    pub source: String,
    pub policy: Policy,
    /// A file's text for the workers, or `None` for the naive preset (the
    /// workers are given its name).
    pub text: Option<String>,
}

/// `--policy` values to the runs they make, in order: `default` is the
/// profile's default policy, `naive` the naive preset, anything else a
/// policy file. A lone `naive` is compared with `default`, run first.
pub fn policies(specs: &[String], profile: &BenchProfile) -> Result<Vec<PolicyChoice>, String> {
    let mut specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    if specs.is_empty() || specs.iter().all(|s| *s == "naive") {
        specs.insert(0, "default");
    }
    specs
        .into_iter()
        .map(|spec| match spec {
            "default" => Ok(PolicyChoice {
                label: "default".into(),
                source: profile.default_policy_source.clone(),
                policy: orderflow_core::policy::parse(
                    &profile.default_policy,
                    &profile.default_policy_source,
                )
                .map_err(|e| e.to_string())?,
                text: Some(profile.default_policy.clone()),
            }),
            "naive" => Ok(PolicyChoice {
                label: "naive".into(),
                source: "the naive preset".into(),
                policy: Policy::naive(),
                text: None,
            }),
            file => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("--policy {file}: cannot read it ({e}); give a policy file, default or naive"))?;
                let policy =
                    orderflow_core::policy::parse(&text, file).map_err(|e| e.to_string())?;
                let label = Path::new(file)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or(file)
                    .to_owned();
                Ok(PolicyChoice {
                    label,
                    source: file.to_owned(),
                    policy,
                    text: Some(text),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/profiles")
    }

    /// Every file of `tests/profiles/` parses with its own parser: profiles
    /// with the simulator's, policies with the policy's, bench plans with
    /// the bench's (their phases with the simulator's); and every profile
    /// there is shipped in orderflow-fleet.
    #[test]
    fn every_file_in_tests_profiles_parses() {
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(profiles_dir()).expect("tests/profiles exists") {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_str().unwrap().to_owned();
            if !file.ends_with(".toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            if file == "policy.toml" || file.ends_with(".policy.toml") {
                if let Err(e) = orderflow_core::policy::parse(&text, &file) {
                    panic!("{file}: {e}");
                }
            } else if let Some(stem) = file.strip_suffix(".bench.toml") {
                let base = std::fs::read_to_string(profiles_dir().join(format!("{stem}.toml")))
                    .unwrap_or_else(|_| panic!("{file} has no {stem}.toml beside it"));
                if let Err(problems) = parse_plan(&text, &base) {
                    panic!("{file}:\n{}", problems.join("\n"));
                }
            } else {
                if let Err(e) = Profile::from_toml(&text) {
                    panic!("{file}: {e}");
                }
                let name = file.trim_end_matches(".toml");
                let shipped = load(name).unwrap_or_else(|e| panic!("{name} is not shipped: {e}"));
                assert_eq!(shipped.text, text, "{file} is shipped as it is");
                seen.push(name.to_owned());
            }
        }
        seen.sort();
        let mut names: Vec<String> = shipped_names().iter().map(|n| (*n).to_owned()).collect();
        names.sort();
        assert_eq!(seen, names, "every shipped profile has its file");
        for required in [
            "happy",
            "flaky",
            "ambiguous",
            "outage",
            "overload",
            "non_idempotent",
        ] {
            assert!(names.iter().any(|n| n == required), "{required}");
        }
    }

    #[test]
    fn the_non_idempotent_policy_is_the_fast_one_with_payment_not_idempotent() {
        let fast = orderflow_core::policy::parse(FAST_POLICY, "fast").unwrap();
        let profile = load("non_idempotent").unwrap();
        let mut own =
            orderflow_core::policy::parse(&profile.default_policy, "non_idempotent").unwrap();
        assert!(!own.downstreams.payment.idempotent);
        assert!(!profile.profile.payment.capabilities.idempotent);
        own.downstreams.payment.idempotent = true;
        assert_eq!(own, fast, "keep non_idempotent.policy.toml in step");
    }

    #[test]
    fn the_outage_takes_the_payment_api_down_for_twenty_seconds_and_back() {
        let outage = load("outage").unwrap();
        let phases = &outage.plan.phases;
        assert_eq!(phases.len(), 2);
        assert_eq!(phases[1].at - phases[0].at, Duration::from_secs(20));
        let down = &phases[0].body["faults"]["payment.charge"];
        assert_eq!(down["timeout_before_apply"], 0.8);
        assert!(phases[0].body.get("seed").is_none(), "the RNG carries on");
        assert_eq!(
            phases[1].body["faults"].as_object().map(|f| f.len()),
            Some(0),
            "back to outage.toml: no faults"
        );
        assert_eq!(
            phases[0].body["shipping"]["fulfilment_step_ms"], 0,
            "the rest of outage.toml stays"
        );
        assert!(outage.plan.rate.is_some());
    }

    #[test]
    fn a_bad_plan_names_every_problem() {
        let problems = parse_plan(
            "rate = 0\nspeed = 1\n[[phase]]\nat = \"soon\"\n[phase.profile.faults.\"payment.charg\"]\nerror_500 = 1.0\n[[phase]]\nname = \"x\"\n",
            "",
        )
        .unwrap_err();
        let text = problems.join("\n");
        for expected in [
            "rate:",
            "speed:",
            "phase[0].at:",
            "payment.charg",
            "phase[1].at: missing",
        ] {
            assert!(text.contains(expected), "{expected} in:\n{text}");
        }
    }

    #[test]
    fn a_lone_naive_is_compared_with_default() {
        let profile = load("happy").unwrap();
        let runs = policies(&["naive".into()], &profile).unwrap();
        let labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["default", "naive"]);
        assert!(runs[1].text.is_none());
        let alone = policies(&["default".into()], &profile).unwrap();
        assert_eq!(alone.len(), 1);
        assert!(
            load("no-such-profile")
                .unwrap_err()
                .contains("happy, flaky")
        );
    }
}
