//! The profile: per-API capabilities and business data, plus per-endpoint
//! faults. Read from TOML at start and from JSON by `PUT /_faults`.
//!
//! Parsing walks a generic value by hand instead of using
//! `#[serde(deny_unknown_fields)]`, because serde stops at the first problem
//! and an operator fixing a profile wants every problem named at once.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::endpoint::{Api, Endpoint};

/// Everything the simulator is told to do: seed, per-API settings, faults.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Profile {
    /// Seeds the one RNG that draws faults and fulfilment exceptions.
    pub seed: u64,
    pub inventory: InventorySettings,
    pub payment: PaymentSettings,
    pub shipping: ShippingSettings,
    /// Faults per endpoint; an endpoint not listed has none.
    pub faults: BTreeMap<Endpoint, Faults>,
}

/// Capabilities every API has, which decide how the fleet may recover.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capabilities {
    /// Whether a repeated `Idempotency-Key` replays the first outcome.
    pub idempotent: bool,
    /// Whether the `by-key` status endpoint exists (else 501).
    pub status_query: bool,
    /// Requests in flight before 503 `over_capacity`; 0 = unlimited.
    pub capacity: u32,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            idempotent: true,
            status_query: true,
            capacity: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct InventorySettings {
    #[serde(flatten)]
    pub capabilities: Capabilities,
    /// Starting stock of scarce SKUs; any SKU not listed is never short.
    pub stock: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaymentSettings {
    #[serde(flatten)]
    pub capabilities: Capabilities,
    /// How long a `tok_processing*` charge stays `processing`.
    pub processing_ms: u64,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        PaymentSettings {
            capabilities: Capabilities::default(),
            processing_ms: 2000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShippingSettings {
    #[serde(flatten)]
    pub capabilities: Capabilities,
    /// ISO country codes refused with 422 `unsupported_destination`.
    pub unsupported_countries: Vec<String>,
    /// Time between fulfilment steps (accepted → picking → ... → delivered).
    pub fulfilment_step_ms: u64,
    /// Chance that a new shipment ends in `exception` instead of `delivered`.
    pub fulfilment_exception: f64,
}

impl Default for ShippingSettings {
    fn default() -> Self {
        ShippingSettings {
            capabilities: Capabilities::default(),
            unsupported_countries: Vec::new(),
            fulfilment_step_ms: 500,
            fulfilment_exception: 0.0,
        }
    }
}

/// Faults of one endpoint. Probabilities are per request; at most one fault
/// kind hits a request, so they must add up to at most 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Faults {
    /// Added delay, drawn uniformly from `[min, max]` ms.
    pub latency_ms: [u64; 2],
    /// The operation happens, then the response is held back.
    pub timeout_after_apply: f64,
    /// Nothing happens and the response is held back.
    pub timeout_before_apply: f64,
    pub error_500: f64,
    pub unavailable_503: f64,
    pub rate_limited_429: f64,
    /// Told to a rate-limited client (header in whole seconds, body in ms).
    pub retry_after_ms: u64,
    /// The operation happens, then the connection drops mid-response.
    pub reset_after_apply: f64,
    /// Nothing happens; `404 not_found`, as a provider answers for a key
    /// it no longer keeps (past its key retention).
    pub not_found_404: f64,
    /// How long a timeout fault holds the response back.
    pub hang_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: [0, 0],
            timeout_after_apply: 0.0,
            timeout_before_apply: 0.0,
            error_500: 0.0,
            unavailable_503: 0.0,
            rate_limited_429: 0.0,
            retry_after_ms: 1000,
            reset_after_apply: 0.0,
            not_found_404: 0.0,
            hang_ms: 30_000,
        }
    }
}

/// Every problem found in a profile, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid profile:\n  {}", .problems.join("\n  "))]
pub struct ProfileError {
    pub problems: Vec<String>,
}

impl ProfileError {
    pub(crate) fn single(problem: impl Display) -> Self {
        ProfileError {
            problems: vec![problem.to_string()],
        }
    }
}

impl Profile {
    /// Reads a profile file: JSON when it ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            ProfileError::single(format_args!("cannot read {}: {err}", path.display()))
        })?;
        if path.extension().is_some_and(|ext| ext == "json") {
            Profile::from_json(&text)
        } else {
            Profile::from_toml(&text)
        }
    }

    pub fn from_toml(text: &str) -> Result<Profile, ProfileError> {
        let value: Value = toml::from_str(text)
            .map_err(|err| ProfileError::single(format_args!("TOML syntax: {err}")))?;
        Profile::from_value(&value)
    }

    pub fn from_json(text: &str) -> Result<Profile, ProfileError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|err| ProfileError::single(format_args!("JSON syntax: {err}")))?;
        Profile::from_value(&value)
    }

    /// Validates a parsed profile, collecting every problem before failing.
    pub fn from_value(value: &Value) -> Result<Profile, ProfileError> {
        let mut reader = Reader::default();
        let profile = reader.profile(value);
        if reader.problems.is_empty() {
            Ok(profile)
        } else {
            Err(ProfileError {
                problems: reader.problems,
            })
        }
    }

    pub fn capabilities(&self, api: Api) -> &Capabilities {
        match api {
            Api::Inventory => &self.inventory.capabilities,
            Api::Payment => &self.payment.capabilities,
            Api::Shipping => &self.shipping.capabilities,
        }
    }

    /// The faults of an endpoint, or none.
    pub fn faults(&self, endpoint: Endpoint) -> Option<&Faults> {
        self.faults.get(&endpoint)
    }
}

const ROOT_KEYS: &[&str] = &["seed", "inventory", "payment", "shipping", "faults"];
const CAPABILITY_KEYS: &[&str] = &["idempotent", "status_query", "capacity"];
const FAULT_KEYS: &[&str] = &[
    "latency_ms",
    "timeout_after_apply",
    "timeout_before_apply",
    "error_500",
    "unavailable_503",
    "rate_limited_429",
    "retry_after_ms",
    "reset_after_apply",
    "not_found_404",
    "hang_ms",
];

/// Walks the value, filling a profile with what is valid and noting the rest.
#[derive(Default)]
struct Reader {
    problems: Vec<String>,
}

impl Reader {
    fn problem(&mut self, path: &[&str], message: impl Display) {
        self.problems.push(format!("{}: {message}", key_path(path)));
    }

    fn table<'v>(&mut self, path: &[&str], value: &'v Value) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.problem(
                    path,
                    format_args!("expected a table, found {}", kind(other)),
                );
                None
            }
        }
    }

    fn known_keys(&mut self, path: &[&str], table: &Map<String, Value>, known: &[&str]) {
        for key in table.keys().filter(|key| !known.contains(&key.as_str())) {
            self.problem(
                &[path, &[key.as_str()]].concat(),
                format_args!("unknown key; expected one of {}", known.join(", ")),
            );
        }
    }

    /// Reads `table[key]` with `parse` into `target`, leaving the default when absent.
    fn field<T>(
        &mut self,
        path: &[&str],
        table: &Map<String, Value>,
        key: &str,
        parse: fn(&Value) -> Result<T, String>,
        target: &mut T,
    ) {
        if let Some(value) = table.get(key) {
            match parse(value) {
                Ok(parsed) => *target = parsed,
                Err(message) => self.problem(&[path, &[key]].concat(), message),
            }
        }
    }

    fn profile(&mut self, value: &Value) -> Profile {
        let mut profile = Profile::default();
        let Some(root) = self.table(&[], value) else {
            return profile;
        };
        self.known_keys(&[], root, ROOT_KEYS);
        self.field(&[], root, "seed", whole_number, &mut profile.seed);
        if let Some(table) = self.section(root, "inventory") {
            self.known_keys(
                &["inventory"],
                table,
                &[CAPABILITY_KEYS, &["stock"]].concat(),
            );
            self.capabilities(&["inventory"], table, &mut profile.inventory.capabilities);
            self.stock(table, &mut profile.inventory.stock);
        }
        if let Some(table) = self.section(root, "payment") {
            let path = &["payment"];
            self.known_keys(path, table, &[CAPABILITY_KEYS, &["processing_ms"]].concat());
            self.capabilities(path, table, &mut profile.payment.capabilities);
            let processing_ms = &mut profile.payment.processing_ms;
            self.field(path, table, "processing_ms", whole_number, processing_ms);
        }
        if let Some(table) = self.section(root, "shipping") {
            let path = &["shipping"];
            let extra = [
                "unsupported_countries",
                "fulfilment_step_ms",
                "fulfilment_exception",
            ];
            self.known_keys(path, table, &[CAPABILITY_KEYS, &extra].concat());
            let shipping = &mut profile.shipping;
            self.capabilities(path, table, &mut shipping.capabilities);
            let countries = &mut shipping.unsupported_countries;
            self.field(path, table, "unsupported_countries", strings, countries);
            let step = &mut shipping.fulfilment_step_ms;
            self.field(path, table, "fulfilment_step_ms", whole_number, step);
            let exception = &mut shipping.fulfilment_exception;
            self.field(path, table, "fulfilment_exception", probability, exception);
        }
        if let Some(table) = self.section(root, "faults") {
            for (name, value) in table {
                let path = &["faults", name.as_str()];
                match name.parse::<Endpoint>() {
                    Ok(endpoint) => {
                        if let Some(faults) = self.faults(path, value) {
                            profile.faults.insert(endpoint, faults);
                        }
                    }
                    Err(_) => {
                        let names: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
                        let expected = names.join(", ");
                        self.problem(
                            path,
                            format_args!("unknown endpoint; expected one of {expected}"),
                        );
                    }
                }
            }
        }
        profile
    }

    fn section<'v>(
        &mut self,
        root: &'v Map<String, Value>,
        key: &str,
    ) -> Option<&'v Map<String, Value>> {
        root.get(key).and_then(|value| self.table(&[key], value))
    }

    fn capabilities(
        &mut self,
        path: &[&str],
        table: &Map<String, Value>,
        target: &mut Capabilities,
    ) {
        self.field(path, table, "idempotent", boolean, &mut target.idempotent);
        self.field(
            path,
            table,
            "status_query",
            boolean,
            &mut target.status_query,
        );
        self.field(path, table, "capacity", small_number, &mut target.capacity);
    }

    fn stock(&mut self, table: &Map<String, Value>, target: &mut BTreeMap<String, u64>) {
        let Some(value) = table.get("stock") else {
            return;
        };
        let Some(stock) = self.table(&["inventory", "stock"], value) else {
            return;
        };
        for (sku, level) in stock {
            match whole_number(level) {
                Ok(level) => {
                    target.insert(sku.clone(), level);
                }
                Err(message) => self.problem(&["inventory", "stock", sku], message),
            }
        }
    }

    fn faults(&mut self, path: &[&str], value: &Value) -> Option<Faults> {
        let table = self.table(path, value)?;
        self.known_keys(path, table, FAULT_KEYS);
        let mut faults = Faults::default();
        self.field(
            path,
            table,
            "latency_ms",
            latency_range,
            &mut faults.latency_ms,
        );
        let probabilities = [
            ("timeout_after_apply", &mut faults.timeout_after_apply),
            ("timeout_before_apply", &mut faults.timeout_before_apply),
            ("error_500", &mut faults.error_500),
            ("unavailable_503", &mut faults.unavailable_503),
            ("rate_limited_429", &mut faults.rate_limited_429),
            ("reset_after_apply", &mut faults.reset_after_apply),
            ("not_found_404", &mut faults.not_found_404),
        ];
        let mut total = 0.0;
        for (key, target) in probabilities {
            self.field(path, table, key, probability, target);
            total += *target;
        }
        if total > 1.0 {
            self.problem(
                path,
                format_args!("fault probabilities add up to {total}; at most one fault hits a request, so they must add up to at most 1"),
            );
        }
        self.field(
            path,
            table,
            "retry_after_ms",
            whole_number,
            &mut faults.retry_after_ms,
        );
        self.field(path, table, "hang_ms", whole_number, &mut faults.hang_ms);
        Some(faults)
    }
}

fn boolean(value: &Value) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| format!("expected true or false, found {}", kind(value)))
}

fn whole_number(value: &Value) -> Result<u64, String> {
    value
        .as_u64()
        .ok_or_else(|| format!("expected a whole number >= 0, found {}", kind(value)))
}

fn small_number(value: &Value) -> Result<u32, String> {
    let number = whole_number(value)?;
    u32::try_from(number).map_err(|_| format!("{number} is too large"))
}

fn probability(value: &Value) -> Result<f64, String> {
    let p = value
        .as_f64()
        .ok_or_else(|| format!("expected a probability (0 to 1), found {}", kind(value)))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("probability {p} is outside 0 to 1"))
    }
}

fn strings(value: &Value) -> Result<Vec<String>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("expected a list of strings, found {}", kind(value)))?;
    items
        .iter()
        .map(|item| {
            item.as_str().map(str::to_owned).ok_or_else(|| {
                format!(
                    "expected a list of strings, found an item that is {}",
                    kind(item)
                )
            })
        })
        .collect()
}

fn latency_range(value: &Value) -> Result<[u64; 2], String> {
    let expected = || format!("expected [min, max] in ms, found {value}");
    let [min, max] = value.as_array().map(Vec::as_slice).ok_or_else(expected)? else {
        return Err(expected());
    };
    let (Some(min), Some(max)) = (min.as_u64(), max.as_u64()) else {
        return Err(expected());
    };
    if min > max {
        return Err(format!("min {min} is greater than max {max}"));
    }
    Ok([min, max])
}

fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a table".to_owned(),
    }
}

/// Renders a key path as TOML would write it: `faults."payment.charge".error_500`.
fn key_path(path: &[&str]) -> String {
    if path.is_empty() {
        return "profile".to_owned();
    }
    let bare = |key: &str| {
        !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    path.iter()
        .map(|key| {
            if bare(key) {
                (*key).to_owned()
            } else {
                Value::from(*key).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_profile_has_documented_defaults() {
        let profile = Profile::from_toml("").unwrap();
        assert_eq!(profile, Profile::default());
        assert_eq!(profile.seed, 0);
        assert!(profile.inventory.capabilities.idempotent);
        assert!(profile.shipping.capabilities.status_query);
        assert_eq!(profile.payment.capabilities.capacity, 0);
        assert_eq!(profile.payment.processing_ms, 2000);
        assert_eq!(profile.shipping.fulfilment_step_ms, 500);
        assert_eq!(profile.shipping.fulfilment_exception, 0.0);
        assert!(profile.faults.is_empty());
    }

    #[test]
    fn reads_the_documented_example() {
        let profile = Profile::from_toml(
            r#"
            seed = 7
            [inventory]
            idempotent = true
            status_query = true
            capacity = 0
            stock = { "SKU-SCARCE" = 5 }
            [payment]
            idempotent = false
            processing_ms = 100
            [shipping]
            status_query = false
            unsupported_countries = ["ZZ"]
            fulfilment_step_ms = 50
            fulfilment_exception = 1
            [faults."payment.charge"]
            latency_ms = [5, 50]
            timeout_after_apply = 0.1
            "#,
        )
        .unwrap();
        assert_eq!(profile.seed, 7);
        assert_eq!(profile.inventory.stock["SKU-SCARCE"], 5);
        assert!(!profile.payment.capabilities.idempotent);
        assert_eq!(profile.payment.processing_ms, 100);
        assert!(!profile.shipping.capabilities.status_query);
        assert_eq!(profile.shipping.unsupported_countries, ["ZZ"]);
        assert_eq!(profile.shipping.fulfilment_exception, 1.0);
        let charge = profile.faults(Endpoint::PaymentCharge).unwrap();
        assert_eq!(charge.latency_ms, [5, 50]);
        assert_eq!(charge.timeout_after_apply, 0.1);
        assert_eq!(charge.hang_ms, 30_000);
        assert_eq!(charge.retry_after_ms, 1000);
    }

    #[test]
    fn reports_every_problem_with_its_key() {
        let err = Profile::from_toml(
            r#"
            sede = 1
            [inventory]
            capcity = 2
            stock = { "SKU-A" = -1 }
            [payment]
            processing_ms = "soon"
            [shipping]
            fulfilment_exception = 1.5
            [faults."payment.charg"]
            error_500 = 0.1
            [faults."shipping.create"]
            latency_ms = [50, 5]
            error_500 = 0.7
            unavailable_503 = 0.6
            "#,
        )
        .unwrap_err();
        let expected = [
            "sede: unknown key; expected one of seed, inventory, payment, shipping, faults",
            "inventory.capcity: unknown key; expected one of idempotent, status_query, capacity, stock",
            "inventory.stock.SKU-A: expected a whole number >= 0, found -1",
            "payment.processing_ms: expected a whole number >= 0, found string \"soon\"",
            "shipping.fulfilment_exception: probability 1.5 is outside 0 to 1",
            "faults.\"payment.charg\": unknown endpoint; expected one of inventory.reserve, inventory.status, inventory.commit, inventory.release, payment.charge, payment.status, payment.refund, shipping.create, shipping.status",
            "faults.\"shipping.create\".latency_ms: min 50 is greater than max 5",
        ];
        for line in expected {
            assert!(
                err.problems.iter().any(|p| p == line),
                "missing {line:?} in {err}"
            );
        }
        assert!(
            err.problems
                .iter()
                .any(|p| p.starts_with("faults.\"shipping.create\": fault probabilities add up to")),
            "{err}"
        );
        assert_eq!(err.problems.len(), expected.len() + 1, "{err}");
    }

    #[test]
    fn syntax_errors_are_one_problem() {
        let err = Profile::from_toml("seed = ").unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].starts_with("TOML syntax"), "{err}");
        let err = Profile::from_json("[1, 2]").unwrap_err();
        assert_eq!(err.problems, ["profile: expected a table, found a list"]);
    }
}
