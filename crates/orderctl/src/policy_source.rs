//! Where a policy comes from: a preset name or a file. The rule lives in
//! `orderflow_core::policy::from_source` (shared with the workers); this
//! side does the file reading the core leaves to its callers.

use orderflow_core::Policy;
use orderflow_core::policy::{PolicyError, from_source};

/// `default` and `naive` name presets; anything else is a file path.
pub fn load(spec: &str) -> Result<Policy, PolicyError> {
    from_source(spec, |path| std::fs::read_to_string(path))
}
