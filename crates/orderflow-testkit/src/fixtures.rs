//! The policy files and simulator profiles under `tests/fixtures/`.
//!
//! Every policy file is complete (it does not build on another fixture),
//! so `cargo run -q -p orderctl -- policy check tests/fixtures/policy/X.toml`
//! checks exactly what the workers load.

use std::path::PathBuf;

/// `tests/fixtures`.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// `tests/fixtures/policy/<name>.toml`.
pub fn policy_path(name: &str) -> PathBuf {
    dir().join("policy").join(format!("{name}.toml"))
}

/// The text of `tests/fixtures/policy/<name>.toml`.
pub fn policy(name: &str) -> String {
    read(policy_path(name))
}

/// The text of `tests/fixtures/profiles/<name>.toml`.
pub fn profile(name: &str) -> String {
    read(dir().join("profiles").join(format!("{name}.toml")))
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// The fast policy every scenario starts from: delay tiers of 200 ms to
/// 2 s, short request timeouts, quick status polls and fulfilment polling.
pub const FAST: &str = "fast";
/// `fast`, but inventory fails fast when overloaded.
pub const INVENTORY_FAIL_FAST: &str = "inventory-fail-fast";
/// `fast`, but a payment stays unknown for at most 2 s before escalation.
pub const PAYMENT_SHORT_AMBIGUITY: &str = "payment-short-ambiguity";
/// `fast`, for a payment provider that is neither idempotent nor queryable.
pub const PAYMENT_NOT_IDEMPOTENT: &str = "payment-not-idempotent";
/// `fast`, but a shipment with no progress for 2 s is stalled.
pub const FULFILMENT_STALL: &str = "fulfilment-stall";
/// `fast`, with finished orders kept 15 s in Redis (the retention soak).
pub const RETENTION_SOAK: &str = "retention-soak";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_fixture_is_a_valid_policy() {
        for name in [
            FAST,
            INVENTORY_FAIL_FAST,
            PAYMENT_SHORT_AMBIGUITY,
            PAYMENT_NOT_IDEMPOTENT,
            FULFILMENT_STALL,
            RETENTION_SOAK,
        ] {
            if let Err(e) = orderflow_core::policy::parse(&policy(name), name) {
                panic!("{e}");
            }
        }
    }

    #[test]
    fn every_profile_fixture_is_a_valid_profile() {
        let profiles = std::fs::read_dir(dir().join("profiles")).unwrap();
        for entry in profiles.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            if let Err(e) = downstream_sim::Profile::from_toml(&text) {
                panic!("{}: {e}", entry.path().display());
            }
        }
    }
}
