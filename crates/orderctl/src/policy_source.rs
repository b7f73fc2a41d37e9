//! Where a policy comes from: a preset name or a file.

use orderflow_core::Policy;
use orderflow_core::policy::{PolicyError, PolicyProblem, parse};

/// `default` and `naive` name presets; anything else is a file path. The
/// naive preset can only be had by name, never from a file.
pub fn load(spec: &str) -> Result<Policy, PolicyError> {
    if let Some(policy) = Policy::preset(spec) {
        return Ok(policy);
    }
    let text = std::fs::read_to_string(spec).map_err(|e| PolicyError {
        source_name: spec.to_owned(),
        problems: vec![PolicyProblem::new(
            "(file)",
            format!("cannot read it ({e}); give a policy file or a preset name: default, naive"),
        )],
    })?;
    parse(&text, spec)
}
