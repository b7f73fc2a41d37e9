//! The deployment files name only what exists (issue 7): `docker-compose.yml`,
//! the `Dockerfile` and every file under `deploy/` run only the workspace's
//! binaries, pass them only the flags and `ORDERFLOW_*` variables their
//! `--help` lists, probe `/healthz` and `/readyz` on the port the worker
//! listens on, give a stage worker longer to stop than its shutdown grace,
//! scale each stage on its own work queue, mount a policy the core accepts,
//! and alert and chart only on metrics `docs/workers.md` documents (or
//! RabbitMQ's Prometheus plugin exports).
//!
//! Needs no broker and no Redis: it reads the files and runs each binary's
//! `--help` from the target directory (built once if missing, as
//! `orderflow_testkit::binaries` does; `ORDERFLOW_E2E_REBUILD=1` rebuilds).
//! Every failure names the file and the name that is wrong.

use orderflow_core::Policy;
use serde::Deserialize;
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The binaries a deployment may run: the fleet and the operator's tool.
const WORKSPACE_BINARIES: [&str; 6] = [
    "inventory-worker",
    "payment-worker",
    "shipping-worker",
    "reconciler",
    "downstream-sim",
    "orderctl",
];

/// The workers: they serve `/healthz`, `/readyz` and `/metrics` on
/// `ORDERFLOW_LISTEN`.
const WORKERS: [&str; 4] = [
    "inventory-worker",
    "payment-worker",
    "shipping-worker",
    "reconciler",
];

/// The stage workers and the stage whose work queue each consumes.
const STAGE_WORKERS: [(&str, &str); 3] = [
    ("inventory-worker", "inventory"),
    ("payment-worker", "payment"),
    ("shipping-worker", "shipping"),
];

/// The metrics of RabbitMQ's `rabbitmq_prometheus` plugin the alerts and
/// the dashboard may use: its per-queue metrics (`/metrics/per-object`,
/// families `queue_coarse_metrics` and `queue_consumer_count`).
const RABBITMQ_PLUGIN_METRICS: [&str; 4] = [
    "rabbitmq_queue_messages",
    "rabbitmq_queue_messages_ready",
    "rabbitmq_queue_messages_unacked",
    "rabbitmq_queue_consumers",
];

/// Where the Dockerfile puts the binaries in the image.
const IMAGE_BIN_DIR: &str = "/usr/local/bin/";

/// The Kubernetes image name the manifests use for the Dockerfile's image.
const IMAGE: &str = "orderflow";

// ---------------------------------------------------------------------------
// The files
// ---------------------------------------------------------------------------

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// Every document of a YAML file, merge keys (`<<: *anchor`) applied; empty
/// documents left out.
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    let mut docs = Vec::new();
    for (i, document) in serde_norway::Deserializer::from_str(&text).enumerate() {
        let mut value = Value::deserialize(document)
            .unwrap_or_else(|e| panic!("{rel}: document {} is not valid YAML: {e}", i + 1));
        value
            .apply_merge()
            .unwrap_or_else(|e| panic!("{rel}: document {}: bad merge key: {e}", i + 1));
        if !value.is_null() {
            docs.push(value);
        }
    }
    docs
}

/// Files under `dir` (relative to the workspace) whose names end with one
/// of `extensions`, as workspace-relative paths, sorted.
fn files_under(dir: &str, extensions: &[&str]) -> Vec<String> {
    fn walk(path: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, extensions, out);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
            {
                out.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&root().join(dir), extensions, &mut found);
    let mut rel: Vec<String> = found
        .iter()
        .map(|p| {
            p.strip_prefix(root())
                .expect("under the workspace")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    rel.sort();
    rel
}

/// One YAML document under `deploy/`.
struct Doc {
    file: String,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    fn name(&self) -> &str {
        self.value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// What the Dockerfile builds.
struct Dockerfile {
    /// Its `ENTRYPOINT`, what a container runs without a command of its own.
    entrypoint: Vec<String>,
    /// The binaries it copies into the image.
    binaries: BTreeSet<String>,
    /// The packages it builds (`-p`).
    packages: BTreeSet<String>,
}

fn dockerfile() -> Dockerfile {
    let text = read("Dockerfile");
    let mut entrypoint = None;
    for line in text.lines() {
        if let Some(rest) = line.trim().strip_prefix("ENTRYPOINT") {
            let parsed: Vec<String> = serde_json::from_str(rest.trim()).unwrap_or_else(|e| {
                panic!("Dockerfile: ENTRYPOINT {rest} is not the exec (JSON array) form: {e}")
            });
            entrypoint = Some(parsed);
        }
    }
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let binaries = tokens
        .iter()
        .filter_map(|t| t.strip_prefix("target/release/"))
        .map(str::to_owned)
        .collect();
    let packages = tokens
        .windows(2)
        .filter(|w| w[0] == "-p")
        .map(|w| w[1].to_owned())
        .collect();
    assert!(
        text.lines()
            .any(|l| l.starts_with("COPY --from=") && l.trim_end().ends_with(IMAGE_BIN_DIR)),
        "Dockerfile: no `COPY --from=… {IMAGE_BIN_DIR}`: the manifests run the binaries from {IMAGE_BIN_DIR}"
    );
    Dockerfile {
        entrypoint: entrypoint.expect("Dockerfile: no ENTRYPOINT"),
        binaries,
        packages,
    }
}

/// Every binary target of the workspace's crates, with its package:
/// `[[bin]]` entries, `src/main.rs` and `src/bin/*`.
fn workspace_binaries() -> BTreeMap<String, String> {
    let mut bins = BTreeMap::new();
    let crates = root().join("crates");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&crates)
        .expect("crates/ lists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let manifest: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))
            .expect("Cargo.toml reads")
            .parse()
            .unwrap_or_else(|e| panic!("{}/Cargo.toml: {e}", dir.display()));
        let package = manifest["package"]["name"]
            .as_str()
            .expect("package.name")
            .to_owned();
        let autobins = manifest["package"]
            .get("autobins")
            .and_then(toml::Value::as_bool)
            .unwrap_or(true);
        let mut explicit_paths = BTreeSet::new();
        for bin in manifest
            .get("bin")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = bin["name"].as_str().expect("[[bin]] name").to_owned();
            if let Some(path) = bin.get("path").and_then(toml::Value::as_str) {
                explicit_paths.insert(path.to_owned());
            }
            bins.insert(name, package.clone());
        }
        if !autobins {
            continue;
        }
        if dir.join("src/main.rs").is_file() && !explicit_paths.contains("src/main.rs") {
            bins.entry(package.clone())
                .or_insert_with(|| package.clone());
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("src/bin")) {
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                let name = if path.is_dir() && path.join("main.rs").is_file() {
                    path.file_name()
                } else if path.extension().is_some_and(|e| e == "rs") {
                    path.file_stem()
                } else {
                    None
                };
                if let Some(name) = name {
                    let name = name.to_string_lossy().into_owned();
                    bins.entry(name).or_insert_with(|| package.clone());
                }
            }
        }
    }
    bins
}

/// `docs/workers.md`'s metric tables: name → type.
fn documented_metrics() -> BTreeMap<String, String> {
    let mut metrics = BTreeMap::new();
    for line in read("docs/workers.md").lines() {
        let Some(rest) = line.strip_prefix("| `orderflow_") else {
            continue;
        };
        let cells: Vec<&str> = rest.split('|').collect();
        let name = format!(
            "orderflow_{}",
            cells[0].trim().trim_end_matches('`').trim_end()
        );
        let kind = cells
            .get(1)
            .map(|c| c.trim().to_owned())
            .unwrap_or_default();
        metrics.insert(name, kind);
    }
    assert!(
        metrics.contains_key("orderflow_up"),
        "docs/workers.md: found no metric table (looked for rows starting with | `orderflow_)"
    );
    metrics
}

/// Where a ConfigMap or Secret key comes from.
#[derive(Clone, Debug)]
enum Source {
    /// A literal value.
    Literal(String),
    /// The content of a file (workspace-relative path).
    File(String),
    /// A value this test cannot see (a Secret's data).
    Opaque,
}

/// Everything the test looks at, read once.
struct World {
    compose: Value,
    dockerfile: Dockerfile,
    /// Every YAML document under `deploy/`.
    docs: Vec<Doc>,
    /// The Grafana dashboards under `deploy/`.
    dashboards: Vec<(String, serde_json::Value)>,
    /// ConfigMaps by name: key → source (generators and ConfigMap
    /// documents; a name generated in several kustomizations has the union
    /// of their keys).
    config_maps: BTreeMap<String, BTreeMap<String, (String, Source)>>,
    /// Secrets by name, likewise.
    secrets: BTreeMap<String, BTreeMap<String, (String, Source)>>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(load)
}

fn load() -> World {
    let compose = yaml_docs("docker-compose.yml")
        .into_iter()
        .next()
        .expect("docker-compose.yml is empty");
    let mut docs = Vec::new();
    for file in files_under("deploy", &["yml", "yaml"]) {
        for value in yaml_docs(&file) {
            docs.push(Doc {
                file: file.clone(),
                value,
            });
        }
    }
    let dashboards = files_under("deploy", &["json"])
        .into_iter()
        .map(|file| {
            let value = serde_json::from_str(&read(&file))
                .unwrap_or_else(|e| panic!("{file} is not valid JSON: {e}"));
            (file, value)
        })
        .collect();

    let mut config_maps: BTreeMap<String, BTreeMap<String, (String, Source)>> = BTreeMap::new();
    let mut secrets: BTreeMap<String, BTreeMap<String, (String, Source)>> = BTreeMap::new();
    for doc in &docs {
        match doc.kind() {
            "Kustomization" | "Component" => {
                let dir = Path::new(&doc.file)
                    .parent()
                    .expect("a file has a directory")
                    .to_string_lossy()
                    .into_owned();
                for (field, into) in [
                    ("configMapGenerator", &mut config_maps),
                    ("secretGenerator", &mut secrets),
                ] {
                    for generator in seq(doc.value.get(field)) {
                        let name = text(generator.get("name")).unwrap_or_else(|| {
                            panic!("{}: a {field} entry without a name", doc.file)
                        });
                        let keys = into.entry(name).or_default();
                        for (key, source) in generated_keys(&doc.file, &dir, generator) {
                            keys.insert(key, (doc.file.clone(), source));
                        }
                    }
                }
            }
            "ConfigMap" => {
                let keys = config_maps.entry(doc.name().to_owned()).or_default();
                for field in ["data", "binaryData"] {
                    for (key, value) in map(doc.value.get(field)) {
                        let source = text(Some(value)).map_or(Source::Opaque, Source::Literal);
                        keys.insert(key, (doc.file.clone(), source));
                    }
                }
            }
            "Secret" => {
                let keys = secrets.entry(doc.name().to_owned()).or_default();
                for field in ["data", "stringData"] {
                    for (key, _) in map(doc.value.get(field)) {
                        keys.insert(key, (doc.file.clone(), Source::Opaque));
                    }
                }
            }
            _ => {}
        }
    }
    World {
        compose,
        dockerfile: dockerfile(),
        docs,
        dashboards,
        config_maps,
        secrets,
    }
}

/// The keys a kustomize `configMapGenerator`/`secretGenerator` entry makes.
fn generated_keys(file: &str, dir: &str, generator: &Value) -> Vec<(String, Source)> {
    let mut keys = Vec::new();
    for literal in seq(generator.get("literals")).filter_map(|v| text(Some(v))) {
        let (key, value) = literal
            .split_once('=')
            .unwrap_or_else(|| panic!("{file}: literal `{literal}` is not KEY=VALUE"));
        keys.push((key.to_owned(), Source::Literal(value.to_owned())));
    }
    for env_file in seq(generator.get("envs")).filter_map(|v| text(Some(v))) {
        let path = format!("{dir}/{env_file}");
        assert!(
            root().join(&path).is_file(),
            "{file}: generator file {env_file} does not exist"
        );
        for line in read(&path).lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once('=').unwrap_or((line, ""));
            keys.push((key.to_owned(), Source::Literal(value.to_owned())));
        }
    }
    for entry in seq(generator.get("files")).filter_map(|v| text(Some(v))) {
        let (key, path) = match entry.split_once('=') {
            Some((key, path)) => (key.to_owned(), path.to_owned()),
            None => (
                Path::new(&entry)
                    .file_name()
                    .expect("a file name")
                    .to_string_lossy()
                    .into_owned(),
                entry.clone(),
            ),
        };
        let path = format!("{dir}/{path}");
        assert!(
            root().join(&path).is_file(),
            "{file}: generator file {entry} does not exist"
        );
        keys.push((key, Source::File(path)));
    }
    keys
}

// ---------------------------------------------------------------------------
// YAML helpers
// ---------------------------------------------------------------------------

fn seq(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    value
        .and_then(Value::as_sequence)
        .map(|s| s.iter())
        .into_iter()
        .flatten()
}

fn map(value: Option<&Value>) -> Vec<(String, &Value)> {
    value
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| text(Some(k)).map(|k| (k, v)))
                .collect()
        })
        .unwrap_or_default()
}

/// A scalar as text (strings, numbers and booleans).
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A command line given as a list or a string.
fn words(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items.iter().filter_map(|v| text(Some(v))).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// Every string in a YAML value, mapping keys included.
fn yaml_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|v| yaml_strings(v, out)),
        Value::Mapping(m) => m.iter().for_each(|(k, v)| {
            yaml_strings(k, out);
            yaml_strings(v, out);
        }),
        Value::Tagged(t) => yaml_strings(&t.value, out),
        _ => {}
    }
}

fn json_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| {
            out.push(k.clone());
            json_strings(v, out);
        }),
        _ => {}
    }
}

/// The identifiers starting with `prefix` in `text` (not in the middle of
/// another identifier).
fn identifiers(text: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        if text[..at].chars().next_back().is_some_and(ident) {
            continue;
        }
        let end = text[at..]
            .find(|c: char| !ident(c))
            .map_or(text.len(), |n| at + n);
        found.insert(text[at..end].to_owned());
    }
    found
}

// ---------------------------------------------------------------------------
// The binaries' --help
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
struct Flag {
    env: Option<String>,
    default: Option<String>,
    takes_value: bool,
}

#[derive(Clone, Debug, Default)]
struct Help {
    flags: BTreeMap<String, Flag>,
    subcommands: BTreeSet<String>,
}

impl Help {
    fn envs(&self) -> BTreeSet<String> {
        self.flags.values().filter_map(|f| f.env.clone()).collect()
    }

    /// The flag whose environment variable is `env`.
    fn flag_of_env(&self, env: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(_, f)| f.env.as_deref() == Some(env))
            .map(|(name, _)| name.as_str())
    }
}

/// Reads clap's `--help`: each option's long name, its `[env: …]` and
/// `[default: …]`, whether it takes a value, and the subcommands.
fn parse_help(text: &str) -> Help {
    let mut help = Help::default();
    let mut section = String::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line.to_owned();
            current = None;
            continue;
        }
        let trimmed = line.trim_start();
        let first = trimmed.split_whitespace().next().unwrap_or("");
        if section == "Commands:" && line.starts_with("  ") && !first.is_empty() {
            if first != "help" {
                help.subcommands.insert(first.to_owned());
            }
            continue;
        }
        let is_flag = line.starts_with("  ")
            && (first.starts_with("--")
                || (first.len() == 3 && first.starts_with('-') && first.ends_with(','))
                || (first.len() == 2 && first.starts_with('-') && first != "--"));
        if is_flag {
            let tokens: Vec<&str> = trimmed.split_whitespace().collect();
            if let Some(i) = tokens.iter().position(|t| t.starts_with("--")) {
                let name = tokens[i]
                    .trim_start_matches("--")
                    .split(['=', '['])
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let takes_value = tokens.get(i + 1).is_some_and(|t| t.starts_with('<'));
                help.flags.insert(
                    name.clone(),
                    Flag {
                        takes_value,
                        ..Flag::default()
                    },
                );
                current = Some(name);
            }
        }
        let Some(flag) = current.as_ref().and_then(|c| help.flags.get_mut(c)) else {
            continue;
        };
        if let Some(at) = trimmed.find("[env: ") {
            let rest = &trimmed[at + "[env: ".len()..];
            let end = rest.find(['=', ']']).unwrap_or(rest.len());
            flag.env = Some(rest[..end].to_owned());
        }
        if let Some(at) = trimmed.find("[default: ") {
            let rest = &trimmed[at + "[default: ".len()..];
            let end = rest.find(']').unwrap_or(rest.len());
            flag.default = Some(rest[..end].to_owned());
        }
    }
    help
}

/// The path of a workspace binary in the target directory, built once if
/// missing.
fn binary_path(name: &str) -> PathBuf {
    if orderflow_testkit::binaries::ALL.contains(&name) {
        return orderflow_testkit::binaries::path(name);
    }
    static BUILT: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let dir = orderflow_testkit::binaries::target_profile_dir();
    let path = dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let forced = std::env::var_os("ORDERFLOW_E2E_REBUILD").is_some();
    if built.contains(name) || (path.is_file() && !forced) {
        return path;
    }
    let package = workspace_binaries()
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no crate of the workspace builds a binary `{name}`"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(root())
        .args(["build", "--bin", name, "-p", &package]);
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.args(["--profile", profile]);
        }
    }
    if let Some(target) = dir.parent() {
        command.env("CARGO_TARGET_DIR", target);
    }
    eprintln!("orderflow-e2e: building once: cargo build --bin {name} -p {package}");
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{cargo}`: {e}"));
    assert!(
        status.success(),
        "`cargo build --bin {name} -p {package}` failed ({status})"
    );
    built.insert(name.to_owned());
    path
}

/// `BINARY [SUBCOMMAND…] --help`, parsed; run once per command.
fn help(binary: &str, subcommands: &[String]) -> Help {
    static CACHE: OnceLock<Mutex<HashMap<Vec<String>, Help>>> = OnceLock::new();
    let key: Vec<String> = std::iter::once(binary.to_owned())
        .chain(subcommands.iter().cloned())
        .collect();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(found) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return found.clone();
    }
    let path = binary_path(binary);
    let mut command = Command::new(&path);
    command.args(subcommands).arg("--help");
    // Settings in this test's environment would show up as values.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ORDERFLOW_") {
            command.env_remove(name);
        }
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let shown = key.join(" ");
    assert!(
        output.status.success(),
        "`{shown} --help` failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed = parse_help(&String::from_utf8_lossy(&output.stdout));
    assert!(
        parsed.flags.contains_key("help"),
        "`{shown} --help` printed no options: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, parsed.clone());
    parsed
}

// ---------------------------------------------------------------------------
// What the files run
// ---------------------------------------------------------------------------

/// A container of a Kubernetes workload.
struct Pod<'a> {
    kind: String,
    object: String,
    object_spec: &'a Value,
    meta: Option<&'a Value>,
    spec: &'a Value,
    container: &'a Value,
}

/// One process the files start from the image.
struct Run<'a> {
    file: String,
    /// `service payment-worker`, `Deployment payment-worker, container …`.
    what: String,
    binary: String,
    args: Vec<String>,
    /// Environment variables it gets, with their value where the files say it.
    env: BTreeMap<String, Option<String>>,
    pod: Option<Pod<'a>>,
}

impl Run<'_> {
    fn at(&self) -> String {
        format!("{}: {}", self.file, self.what)
    }

    /// The subcommands its arguments name (`orderctl publish …`).
    fn subcommands(&self) -> Vec<String> {
        let mut path = Vec::new();
        let mut current = help(&self.binary, &path);
        let mut value_next = false;
        for arg in &self.args {
            if std::mem::take(&mut value_next) {
                continue;
            }
            if let Some(flag) = arg.strip_prefix("--") {
                value_next =
                    !flag.contains('=') && current.flags.get(flag).is_some_and(|f| f.takes_value);
            } else if current.subcommands.contains(arg) {
                path.push(arg.clone());
                current = help(&self.binary, &path);
            }
        }
        path
    }

    /// The value a setting gets: its flag on the command line, else its
    /// variable, else the default `--help` shows. `None` when set from a
    /// source this test cannot read.
    fn setting(&self, flag: &str) -> Option<String> {
        let help = help(&self.binary, &self.subcommands());
        let long = format!("--{flag}");
        let with_value = format!("--{flag}=");
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if *arg == long {
                return args.next().cloned();
            }
            if let Some(value) = arg.strip_prefix(&with_value) {
                return Some(value.to_owned());
            }
        }
        let known = help.flags.get(flag)?;
        if let Some(env) = &known.env
            && let Some(value) = self.env.get(env)
        {
            return value.clone();
        }
        known.default.clone()
    }

    fn stage(&self) -> Option<&'static str> {
        STAGE_WORKERS
            .iter()
            .find(|(binary, _)| *binary == self.binary)
            .map(|(_, stage)| *stage)
    }
}

/// The binary a command line runs from the image.
fn binary_of(at: &str, command: &[String]) -> String {
    let program = command
        .first()
        .unwrap_or_else(|| panic!("{at}: runs nothing (an empty command)"));
    if program.contains('/') {
        let name = program.strip_prefix(IMAGE_BIN_DIR).unwrap_or_else(|| {
            panic!("{at}: runs `{program}`, which is not in the image's {IMAGE_BIN_DIR}")
        });
        name.to_owned()
    } else {
        program.clone()
    }
}

/// Every process `docker-compose.yml` starts from the Dockerfile's image.
fn compose_runs(world: &World) -> Vec<Run<'_>> {
    let file = "docker-compose.yml".to_owned();
    let mut runs = Vec::new();
    for (service, spec) in map(world.compose.get("services")) {
        if spec.get("build").is_none() {
            continue; // rabbitmq, redis: not our image
        }
        let at = format!("{file}: service {service}");
        let mut command = match spec.get("entrypoint") {
            Some(entrypoint) => words(Some(entrypoint)),
            None => world.dockerfile.entrypoint.clone(),
        };
        command.extend(words(spec.get("command")));
        let binary = binary_of(&at, &command);
        let mut env = BTreeMap::new();
        match spec.get("environment") {
            Some(Value::Sequence(items)) => {
                for item in items.iter().filter_map(|v| text(Some(v))) {
                    let (key, value) = match item.split_once('=') {
                        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                        None => (item, None),
                    };
                    env.insert(key, value);
                }
            }
            other => {
                for (key, value) in map(other) {
                    env.insert(key, text(Some(value)));
                }
            }
        }
        runs.push(Run {
            file: file.clone(),
            what: format!("service {service}"),
            binary,
            args: command[1..].to_vec(),
            env,
            pod: None,
        });
    }
    runs
}

/// The pod template of a Kubernetes workload.
fn pod_template(doc: &Doc) -> Option<(&Value, Option<&Value>, &Value)> {
    let spec = doc.value.get("spec")?;
    let template = match doc.kind() {
        "Pod" => return Some((spec, doc.value.get("metadata"), spec)),
        "CronJob" => spec.get("jobTemplate")?.get("spec")?.get("template")?,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            spec.get("template")?
        }
        _ => return None,
    };
    Some((spec, template.get("metadata"), template.get("spec")?))
}

/// Every container under `deploy/` that runs the Dockerfile's image.
fn kubernetes_runs(world: &World) -> Vec<Run<'_>> {
    let mut runs = Vec::new();
    for doc in &world.docs {
        let Some((object_spec, meta, spec)) = pod_template(doc) else {
            continue;
        };
        for field in ["initContainers", "containers"] {
            for container in seq(spec.get(field)) {
                let name = text(container.get("name")).unwrap_or_default();
                let what = format!("{} {}, container {name}", doc.kind(), doc.name());
                let at = format!("{}: {what}", doc.file);
                let image = text(container.get("image")).unwrap_or_default();
                if image.split([':', '@']).next() != Some(IMAGE) {
                    continue;
                }
                let command = words(container.get("command"));
                assert!(
                    !command.is_empty(),
                    "{at}: no `command`: say which binary it runs (the image's ENTRYPOINT is {:?})",
                    world.dockerfile.entrypoint
                );
                let binary = binary_of(&at, &command);
                let mut args = command[1..].to_vec();
                args.extend(words(container.get("args")));
                let mut env = BTreeMap::new();
                for source in seq(container.get("envFrom")) {
                    let prefix = text(source.get("prefix")).unwrap_or_default();
                    let (what_kind, reference, known) = if let Some(r) = source.get("configMapRef")
                    {
                        ("ConfigMap", r, &world.config_maps)
                    } else if let Some(r) = source.get("secretRef") {
                        ("Secret", r, &world.secrets)
                    } else {
                        panic!("{at}: an envFrom entry names neither a ConfigMap nor a Secret")
                    };
                    let referenced = text(reference.get("name")).unwrap_or_default();
                    let keys = known.get(&referenced).unwrap_or_else(|| {
                        panic!(
                            "{at}: envFrom names {what_kind} `{referenced}`, which no file under deploy/ defines"
                        )
                    });
                    for (key, (_, source)) in keys {
                        let value = match source {
                            Source::Literal(v) => Some(v.clone()),
                            Source::File(_) | Source::Opaque => None,
                        };
                        env.insert(format!("{prefix}{key}"), value);
                    }
                }
                for variable in seq(container.get("env")) {
                    let key = text(variable.get("name"))
                        .unwrap_or_else(|| panic!("{at}: an env entry without a name"));
                    env.insert(key, text(variable.get("value")));
                }
                runs.push(Run {
                    file: doc.file.clone(),
                    what,
                    binary,
                    args,
                    env,
                    pod: Some(Pod {
                        kind: doc.kind().to_owned(),
                        object: doc.name().to_owned(),
                        object_spec,
                        meta,
                        spec,
                        container,
                    }),
                });
            }
        }
    }
    runs
}

fn all_runs(world: &World) -> Vec<Run<'_>> {
    let mut runs = compose_runs(world);
    runs.extend(kubernetes_runs(world));
    runs
}

fn docs_of_kind<'a>(world: &'a World, kind: &'a str) -> impl Iterator<Item = &'a Doc> + 'a {
    world.docs.iter().filter(move |d| d.kind() == kind)
}

/// The labels of a pod template.
fn pod_labels(pod: &Pod<'_>) -> BTreeMap<String, String> {
    map(pod.meta.and_then(|m| m.get("labels")))
        .into_iter()
        .filter_map(|(k, v)| text(Some(v)).map(|v| (k, v)))
        .collect()
}

/// Whether `selector.matchLabels` selects a pod with `labels`.
fn selects(selector: Option<&Value>, labels: &BTreeMap<String, String>) -> bool {
    let wanted = map(selector.and_then(|s| s.get("matchLabels")));
    !wanted.is_empty()
        && wanted
            .iter()
            .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
}

/// A probe's or monitor's port: a number, or the name of a container port.
fn resolve_port(container: &Value, port: &Value) -> Option<u16> {
    if let Some(n) = port.as_u64() {
        return u16::try_from(n).ok();
    }
    let name = port.as_str()?;
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    seq(container.get("ports"))
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|p| p.get("containerPort"))
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[test]
fn the_compose_file_and_every_deploy_file_parse() {
    let world = world();
    let files: BTreeSet<&str> = world.docs.iter().map(|d| d.file.as_str()).collect();
    for expected in [
        "deploy/kubernetes/kustomization.yaml",
        "deploy/prometheus/prometheus.yml",
        "deploy/prometheus/alerts.yml",
    ] {
        assert!(files.contains(expected), "{expected} is missing");
    }
    assert!(
        world
            .dashboards
            .iter()
            .any(|(f, _)| f == "deploy/grafana/orderflow.json"),
        "deploy/grafana/orderflow.json is missing"
    );
    for (file, dashboard) in &world.dashboards {
        let panels = dashboard["panels"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: no `panels`: not a Grafana dashboard"));
        assert!(dashboard["uid"].is_string(), "{file}: no `uid`");
        let mut ids = BTreeSet::new();
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("(untitled)");
            assert!(
                ids.insert(panel["id"].as_u64()),
                "{file}: panel `{title}` repeats id {}",
                panel["id"]
            );
            if panel["type"] == "row" {
                continue;
            }
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            assert!(!targets.is_empty(), "{file}: panel `{title}` has no query");
            for target in targets {
                assert!(
                    target["expr"]
                        .as_str()
                        .is_some_and(|e| !e.trim().is_empty()),
                    "{file}: panel `{title}` has a query without `expr`"
                );
            }
        }
    }
    // Everything a kustomization lists exists.
    for doc in world
        .docs
        .iter()
        .filter(|d| matches!(d.kind(), "Kustomization" | "Component"))
    {
        let dir = root()
            .join(&doc.file)
            .parent()
            .expect("a dir")
            .to_path_buf();
        for field in ["resources", "components"] {
            for entry in seq(doc.value.get(field)).filter_map(|v| text(Some(v))) {
                assert!(
                    dir.join(&entry).exists(),
                    "{}: {field} lists `{entry}`, which does not exist",
                    doc.file
                );
            }
        }
    }
    // The rule files Prometheus loads exist.
    for doc in world
        .docs
        .iter()
        .filter(|d| d.value.get("scrape_configs").is_some())
    {
        let dir = root()
            .join(&doc.file)
            .parent()
            .expect("a dir")
            .to_path_buf();
        for rules in seq(doc.value.get("rule_files")).filter_map(|v| text(Some(v))) {
            assert!(
                dir.join(&rules).is_file(),
                "{}: rule_files lists `{rules}`, which does not exist",
                doc.file
            );
        }
    }
}

#[test]
fn every_binary_they_run_is_a_workspace_binary_in_the_image() {
    let world = world();
    let workspace = workspace_binaries();
    for expected in WORKSPACE_BINARIES {
        assert!(
            workspace.contains_key(expected),
            "no crate builds `{expected}` any more (crates/*/Cargo.toml, src/main.rs, src/bin/)"
        );
    }
    for binary in &world.dockerfile.binaries {
        let package = workspace.get(binary).unwrap_or_else(|| {
            panic!("Dockerfile: copies `{binary}`, which no crate of the workspace builds")
        });
        assert!(
            world.dockerfile.packages.contains(package),
            "Dockerfile: copies `{binary}` but does not build its package (`-p {package}`)"
        );
    }
    let entry = binary_of("Dockerfile: ENTRYPOINT", &world.dockerfile.entrypoint);
    assert!(
        world.dockerfile.binaries.contains(&entry),
        "Dockerfile: ENTRYPOINT runs `{entry}`, which the image does not hold"
    );
    let runs = all_runs(world);
    assert!(
        runs.iter().any(|r| r.file == "docker-compose.yml")
            && runs.iter().any(|r| r.file.starts_with("deploy/")),
        "found no process in docker-compose.yml or under deploy/"
    );
    for run in &runs {
        assert!(
            WORKSPACE_BINARIES.contains(&run.binary.as_str()),
            "{}: runs `{}`, which is none of the workspace's binaries ({})",
            run.at(),
            run.binary,
            WORKSPACE_BINARIES.join(", ")
        );
        assert!(
            workspace.contains_key(&run.binary),
            "{}: runs `{}`, which no crate builds",
            run.at(),
            run.binary
        );
        assert!(
            world.dockerfile.binaries.contains(&run.binary),
            "{}: runs `{}`, which the Dockerfile does not copy into the image",
            run.at(),
            run.binary
        );
    }
    // Every worker has a Deployment.
    for worker in WORKERS {
        assert!(
            runs.iter()
                .any(|r| r.binary == worker
                    && r.pod.as_ref().is_some_and(|p| p.kind == "Deployment")),
            "deploy/kubernetes: no Deployment runs `{worker}`"
        );
    }
}

#[test]
fn every_flag_and_orderflow_variable_is_one_the_binary_accepts() {
    let world = world();
    for run in all_runs(world) {
        let path = run.subcommands();
        let here = help(&run.binary, &path);
        let top = help(&run.binary, &[]);
        let shown = std::iter::once(run.binary.clone())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        for arg in &run.args {
            let Some(flag) = arg.strip_prefix("--") else {
                continue;
            };
            let flag = flag.split('=').next().unwrap_or(flag);
            assert!(
                here.flags.contains_key(flag) || top.flags.contains_key(flag),
                "{}: passes `--{flag}`, which `{shown} --help` does not list",
                run.at()
            );
        }
        let accepted: BTreeSet<String> = here.envs().union(&top.envs()).cloned().collect();
        for variable in run.env.keys().filter(|k| k.starts_with("ORDERFLOW_")) {
            assert!(
                accepted.contains(variable),
                "{}: sets {variable}, which `{shown} --help` does not list (it takes: {})",
                run.at(),
                accepted.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
}

#[test]
fn probes_and_scrape_ports_point_at_the_listen_address() {
    let world = world();
    let runs = all_runs(world);
    for run in &runs {
        let worker = WORKERS.contains(&run.binary.as_str());
        let Some(pod) = &run.pod else {
            // Compose: other containers scrape the workers, so not loopback.
            if let Some(listen) = run.env.get("ORDERFLOW_LISTEN").cloned().flatten() {
                let addr: SocketAddr = listen.parse().unwrap_or_else(|e| {
                    panic!(
                        "{}: ORDERFLOW_LISTEN={listen} is not an address: {e}",
                        run.at()
                    )
                });
                assert!(
                    addr.ip().is_unspecified(),
                    "{}: ORDERFLOW_LISTEN={listen} is not reachable from other containers; use 0.0.0.0:PORT",
                    run.at()
                );
            }
            continue;
        };
        let container = pod.container;
        let has_probes = ["livenessProbe", "readinessProbe", "startupProbe"]
            .iter()
            .any(|p| container.get(*p).is_some());
        if !worker && !has_probes {
            continue;
        }
        // The subcommand's own flag (`orderctl console --listen`).
        let listen_flag = help(&run.binary, &run.subcommands())
            .flags
            .get("listen")
            .cloned();
        let listen_env = listen_flag
            .as_ref()
            .and_then(|f| f.env.clone())
            .unwrap_or_else(|| "--listen".into());
        let set =
            run.args.iter().any(|a| a.starts_with("--listen")) || run.env.contains_key(&listen_env);
        assert!(
            set,
            "{}: does not set {listen_env}: the default address is loopback, which the kubelet's probes cannot reach",
            run.at()
        );
        let listen = run.setting("listen").unwrap_or_else(|| {
            panic!(
                "{}: {listen_env} must be a literal value here, to check the probes against it",
                run.at()
            )
        });
        let addr: SocketAddr = listen.parse().unwrap_or_else(|e| {
            panic!("{}: {listen_env}={listen} is not an address: {e}", run.at())
        });
        assert!(
            addr.ip().is_unspecified(),
            "{}: {listen_env}={listen} listens on one address only; probes and Prometheus come from outside the pod: use 0.0.0.0:{}",
            run.at(),
            addr.port()
        );
        let port = addr.port();
        let container_ports: Vec<u64> = seq(container.get("ports"))
            .filter_map(|p| p.get("containerPort").and_then(Value::as_u64))
            .collect();
        assert!(
            container_ports.contains(&u64::from(port)),
            "{}: {listen_env} listens on {port}, but the container declares ports {container_ports:?}",
            run.at()
        );
        let expected_paths: &[(&str, &str)] = if worker {
            &[("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]
        } else {
            &[]
        };
        for (probe, path) in expected_paths {
            let http = container
                .get(*probe)
                .and_then(|p| p.get("httpGet"))
                .unwrap_or_else(|| panic!("{}: no {probe} with httpGet {path}", run.at()));
            let got = text(http.get("path")).unwrap_or_default();
            assert_eq!(
                got,
                *path,
                "{}: {probe} asks {got}; the worker answers it on {path}",
                run.at()
            );
        }
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            let Some(http) = container.get(probe).and_then(|p| p.get("httpGet")) else {
                continue;
            };
            let probe_port = http
                .get("port")
                .and_then(|p| resolve_port(container, p))
                .unwrap_or_else(|| panic!("{}: {probe}'s port names no container port", run.at()));
            assert_eq!(
                probe_port,
                port,
                "{}: {probe} asks port {probe_port}, but {listen_env} listens on {port}",
                run.at()
            );
        }
        let annotations = map(pod.meta.and_then(|m| m.get("annotations")));
        if let Some((_, scrape_port)) = annotations.iter().find(|(k, _)| k == "prometheus.io/port")
        {
            let scrape_port = text(Some(scrape_port)).unwrap_or_default();
            assert_eq!(
                scrape_port,
                port.to_string(),
                "{}: annotation prometheus.io/port is {scrape_port}, but {listen_env} listens on {port}",
                run.at()
            );
        }
    }
    // A PodMonitor scrapes a port the selected workers listen on.
    for monitor in docs_of_kind(world, "PodMonitor") {
        let selector = monitor.value.get("spec").and_then(|s| s.get("selector"));
        let selected: Vec<&Run<'_>> = runs
            .iter()
            .filter(|r| {
                r.pod
                    .as_ref()
                    .is_some_and(|p| selects(selector, &pod_labels(p)))
            })
            .collect();
        assert!(
            !selected.is_empty(),
            "{}: PodMonitor {} selects no pod of the fleet",
            monitor.file,
            monitor.name()
        );
        for endpoint in seq(monitor
            .value
            .get("spec")
            .and_then(|s| s.get("podMetricsEndpoints")))
        {
            let path = text(endpoint.get("path")).unwrap_or_else(|| "/metrics".into());
            assert_eq!(
                path,
                "/metrics",
                "{}: PodMonitor {} scrapes {path}",
                monitor.file,
                monitor.name()
            );
            for run in &selected {
                let container = run.pod.as_ref().expect("selected pods are pods").container;
                let port = endpoint
                    .get("port")
                    .and_then(|p| resolve_port(container, p))
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: PodMonitor {} scrapes port {:?}, which {} does not declare",
                            monitor.file,
                            monitor.name(),
                            text(endpoint.get("port")),
                            run.at()
                        )
                    });
                let listen: SocketAddr = run
                    .setting("listen")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or_else(|| panic!("{}: no literal listen address", run.at()));
                assert_eq!(
                    port,
                    listen.port(),
                    "{}: PodMonitor {} scrapes {port} on {}, which listens on {}",
                    monitor.file,
                    monitor.name(),
                    run.at(),
                    listen.port()
                );
            }
        }
    }
}

#[test]
fn a_stage_worker_is_given_longer_to_stop_than_its_shutdown_grace() {
    let world = world();
    for run in kubernetes_runs(world) {
        if !help(&run.binary, &[]).flags.contains_key("shutdown-grace") {
            continue;
        }
        let pod = run.pod.as_ref().expect("a Kubernetes run");
        let grace = run.setting("shutdown-grace").unwrap_or_else(|| {
            panic!(
                "{}: ORDERFLOW_SHUTDOWN_GRACE must be a literal value here",
                run.at()
            )
        });
        let grace: Duration = humantime::parse_duration(&grace).unwrap_or_else(|e| {
            panic!(
                "{}: shutdown grace `{grace}` is not a duration: {e}",
                run.at()
            )
        });
        let kill_after = pod
            .spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(30);
        // The grace is for in-flight deliveries; closing the connections
        // comes after it, within the worker's drain bound.
        let bound = orderflow_worker::drain_bound(grace);
        assert!(
            Duration::from_secs(kill_after) > bound,
            "{}: terminationGracePeriodSeconds {kill_after} is not longer than the worker's drain bound ({}, for a shutdown grace of {}): the worker would be killed while it drains",
            run.at(),
            humantime::format_duration(bound),
            humantime::format_duration(grace)
        );
    }
}

#[test]
fn every_pod_runs_as_non_root_without_privilege_escalation() {
    let world = world();
    for run in kubernetes_runs(world) {
        let pod = run.pod.as_ref().expect("a Kubernetes run");
        let setting = |key: &str| {
            let of = |v: Option<&Value>| v.and_then(|s| s.get(key)).and_then(Value::as_bool);
            of(pod.container.get("securityContext")).or(of(pod.spec.get("securityContext")))
        };
        assert_eq!(
            setting("runAsNonRoot"),
            Some(true),
            "{}: neither the pod nor the container sets securityContext.runAsNonRoot: true",
            run.at()
        );
        let escalation = pod
            .container
            .get("securityContext")
            .and_then(|s| s.get("allowPrivilegeEscalation"))
            .and_then(Value::as_bool);
        assert_eq!(
            escalation,
            Some(false),
            "{}: the container does not set securityContext.allowPrivilegeEscalation: false",
            run.at()
        );
    }
}

#[test]
fn the_policy_configmap_is_the_default_policy_and_is_where_orderflow_policy_says() {
    let world = world();
    let default_id = Policy::default_policy().id();
    let mut policies = 0;
    for (config_map, keys) in &world.config_maps {
        for (key, (file, source)) in keys {
            let Source::File(path) = source else { continue };
            if !key.ends_with(".toml") {
                continue;
            }
            policies += 1;
            let policy = orderflow_core::policy::parse(&read(path), path).unwrap_or_else(|e| {
                panic!(
                    "{file}: ConfigMap {config_map} key {key} ({path}) is not a valid policy: {e}"
                )
            });
            assert_eq!(
                policy.id(),
                default_id,
                "{file}: ConfigMap {config_map} key {key} ({path}) is not the built-in default policy; copy crates/orderflow-core/policy/default.toml over it again"
            );
        }
    }
    assert!(
        policies > 0,
        "deploy/: no ConfigMap generates a policy (.toml) file"
    );

    for run in kubernetes_runs(world) {
        let Some(spec) = run.env.get("ORDERFLOW_POLICY") else {
            assert!(
                !WORKERS.contains(&run.binary.as_str()),
                "{}: sets no ORDERFLOW_POLICY: the fleet would run the binary's built-in policy, not the ConfigMap's",
                run.at()
            );
            continue;
        };
        let spec = spec
            .clone()
            .unwrap_or_else(|| panic!("{}: ORDERFLOW_POLICY must be a literal value", run.at()));
        if Policy::preset(&spec).is_some() {
            continue;
        }
        let pod = run.pod.as_ref().expect("a Kubernetes run");
        let mounted = seq(pod.container.get("volumeMounts")).find_map(|mount| {
            let mount_path = text(mount.get("mountPath"))?;
            let key = match text(mount.get("subPath")) {
                Some(sub) if mount_path == spec => sub,
                Some(_) => return None,
                None => spec
                    .strip_prefix(&format!("{}/", mount_path.trim_end_matches('/')))?
                    .to_owned(),
            };
            let volume_name = text(mount.get("name"))?;
            let volume = seq(pod.spec.get("volumes"))
                .find(|v| text(v.get("name")).as_deref() == Some(volume_name.as_str()))?;
            let config_map = text(volume.get("configMap")?.get("name"))?;
            Some((config_map, key))
        });
        let (config_map, key) = mounted.unwrap_or_else(|| {
            panic!(
                "{}: ORDERFLOW_POLICY={spec}, but no ConfigMap volume is mounted there",
                run.at()
            )
        });
        let has_key = world
            .config_maps
            .get(&config_map)
            .is_some_and(|keys| keys.contains_key(&key));
        assert!(
            has_key,
            "{}: ORDERFLOW_POLICY={spec} is key `{key}` of ConfigMap {config_map}, which no file under deploy/ defines",
            run.at()
        );
    }
}

#[test]
fn every_stage_worker_has_a_disruption_budget_and_scales_on_its_work_queue() {
    let world = world();
    for run in kubernetes_runs(world) {
        let Some(stage) = run.stage() else { continue };
        let pod = run.pod.as_ref().expect("a Kubernetes run");
        if pod.kind != "Deployment" {
            continue;
        }
        let labels = pod_labels(pod);
        assert!(
            docs_of_kind(world, "PodDisruptionBudget").any(|pdb| selects(
                pdb.value.get("spec").and_then(|s| s.get("selector")),
                &labels
            )),
            "{}: no PodDisruptionBudget selects Deployment {}",
            run.at(),
            pod.object
        );
        let scaled: Vec<&Doc> = docs_of_kind(world, "ScaledObject")
            .filter(|so| {
                let target = so.value.get("spec").and_then(|s| s.get("scaleTargetRef"));
                text(target.and_then(|t| t.get("name"))).as_deref() == Some(pod.object.as_str())
                    && text(target.and_then(|t| t.get("kind")))
                        .is_none_or(|kind| kind == "Deployment")
            })
            .collect();
        let [scaled] = scaled.as_slice() else {
            panic!(
                "{}: {} ScaledObjects target Deployment {}; want one",
                run.at(),
                scaled.len(),
                pod.object
            );
        };
        assert!(
            pod.object_spec.get("replicas").is_none(),
            "{}: Deployment {} sets `replicas`, which fights ScaledObject {} ({}) on every apply",
            run.at(),
            pod.object,
            scaled.name(),
            scaled.file
        );
        let namespace = run.setting("namespace").unwrap_or_else(|| {
            panic!(
                "{}: ORDERFLOW_NAMESPACE must be a literal value here",
                run.at()
            )
        });
        let queue = format!("{namespace}.{stage}");
        let triggers: Vec<&Value> = seq(scaled.value.get("spec").and_then(|s| s.get("triggers")))
            .filter(|t| text(t.get("type")).as_deref() == Some("rabbitmq"))
            .collect();
        assert!(
            !triggers.is_empty(),
            "{}: ScaledObject {} has no rabbitmq trigger",
            scaled.file,
            scaled.name()
        );
        for trigger in triggers {
            let metadata = trigger.get("metadata");
            let named = text(metadata.and_then(|m| m.get("queueName"))).unwrap_or_default();
            assert_eq!(
                named,
                queue,
                "{}: ScaledObject {} scales {} on queue `{named}`, but its work queue is `{queue}` (ORDERFLOW_NAMESPACE={namespace})",
                scaled.file,
                scaled.name(),
                pod.object
            );
            let mode = text(metadata.and_then(|m| m.get("mode"))).unwrap_or_default();
            assert_eq!(
                mode,
                "QueueLength",
                "{}: ScaledObject {} scales on `{mode}`, not on the queue length",
                scaled.file,
                scaled.name()
            );
            let auth = text(trigger.get("authenticationRef").and_then(|a| a.get("name")))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: ScaledObject {}'s trigger has no authenticationRef",
                        scaled.file,
                        scaled.name()
                    )
                });
            let auth_doc = docs_of_kind(world, "TriggerAuthentication")
                .find(|d| d.name() == auth)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: ScaledObject {} uses TriggerAuthentication {auth}, which no file defines",
                        scaled.file,
                        scaled.name()
                    )
                });
            let refs: Vec<&Value> = seq(auth_doc
                .value
                .get("spec")
                .and_then(|s| s.get("secretTargetRef")))
            .collect();
            assert!(
                refs.iter()
                    .any(|r| text(r.get("parameter")).as_deref() == Some("host")),
                "{}: TriggerAuthentication {auth} gives no `host` (the AMQP URL)",
                auth_doc.file
            );
            for reference in refs {
                let secret = text(reference.get("name")).unwrap_or_default();
                let key = text(reference.get("key")).unwrap_or_default();
                assert!(
                    world
                        .secrets
                        .get(&secret)
                        .is_some_and(|keys| keys.contains_key(&key)),
                    "{}: TriggerAuthentication {auth} reads key {key} of Secret {secret}, which no file under deploy/ defines",
                    auth_doc.file
                );
            }
        }
    }
}

#[test]
fn alerts_and_dashboards_use_only_documented_metrics() {
    let world = world();
    let documented = documented_metrics();
    let mut sources: Vec<(String, Vec<String>)> = Vec::new();
    for doc in &world.docs {
        let mut strings = Vec::new();
        yaml_strings(&doc.value, &mut strings);
        sources.push((doc.file.clone(), strings));
    }
    for (file, dashboard) in &world.dashboards {
        let mut strings = Vec::new();
        json_strings(dashboard, &mut strings);
        sources.push((file.clone(), strings));
    }
    let mut used = BTreeSet::new();
    for (file, strings) in &sources {
        for string in strings {
            for name in identifiers(string, "orderflow_") {
                let histogram_part = ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                    name.strip_suffix(suffix)
                        .and_then(|base| documented.get(base))
                        .is_some_and(|kind| kind == "histogram")
                });
                assert!(
                    documented.contains_key(&name) || histogram_part,
                    "{file}: uses metric `{name}`, which docs/workers.md does not document"
                );
                used.insert(name);
            }
            for name in identifiers(string, "rabbitmq_") {
                assert!(
                    RABBITMQ_PLUGIN_METRICS.contains(&name.as_str()),
                    "{file}: uses metric `{name}`, which is not one of RabbitMQ's Prometheus plugin's queue metrics this test knows ({})",
                    RABBITMQ_PLUGIN_METRICS.join(", ")
                );
            }
        }
    }
    // What the alerts must watch (issue 7).
    for needed in [
        "orderflow_breaker_state",
        "orderflow_policy_info",
        "orderflow_oldest_order_seconds",
        "orderflow_escalations_total",
        "orderflow_orders",
        "orderflow_decisions_total",
        "orderflow_retry_budget_left",
        "orderflow_downstream_call_seconds_bucket",
    ] {
        assert!(
            used.contains(needed),
            "deploy/: no alert or dashboard uses `{needed}`"
        );
    }
}

#[test]
fn every_alert_is_explained_in_the_deploy_readme() {
    let world = world();
    let readme = read("deploy/README.md");
    let mut alerts = 0;
    for doc in &world.docs {
        for group in seq(doc.value.get("groups")) {
            for rule in seq(group.get("rules")) {
                let Some(alert) = text(rule.get("alert")) else {
                    continue;
                };
                alerts += 1;
                assert!(
                    readme.contains(&format!("`{alert}`")),
                    "{}: alert {alert} is not explained in deploy/README.md",
                    doc.file
                );
                assert!(
                    text(rule.get("expr")).is_some_and(|e| !e.trim().is_empty()),
                    "{}: alert {alert} has no expr",
                    doc.file
                );
                let annotations = rule.get("annotations");
                assert!(
                    text(annotations.and_then(|a| a.get("summary"))).is_some(),
                    "{}: alert {alert} has no summary",
                    doc.file
                );
                assert!(
                    text(rule.get("labels").and_then(|l| l.get("severity"))).is_some(),
                    "{}: alert {alert} has no severity label",
                    doc.file
                );
            }
        }
    }
    assert!(alerts > 0, "deploy/: found no alert rules");
}

/// The clusters component (`deploy/kubernetes/clusters/`) and the
/// connections its example Secret gives the workers agree: the AMQP URL
/// names the `RabbitmqCluster`'s Service, whose nodes are as many as the
/// policy's quorum replicas; the Redis URL is the cluster's seeds, pods of
/// the Redis StatefulSet that the create Job puts into the cluster.
#[test]
fn the_clusters_and_the_connections_pointing_at_them_are_in_step() {
    let world = world();
    let in_component = |d: &&Doc| d.file.starts_with("deploy/kubernetes/clusters/");
    let rabbit = docs_of_kind(world, "RabbitmqCluster")
        .find(in_component)
        .expect("deploy/kubernetes/clusters: no RabbitmqCluster");
    let nodes = rabbit
        .value
        .get("spec")
        .and_then(|s| s.get("replicas"))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{}: the RabbitmqCluster sets no replicas", rabbit.file));
    let policy = orderflow_core::policy::parse(
        &read("deploy/kubernetes/policy.toml"),
        "deploy/kubernetes/policy.toml",
    )
    .expect("the deployed policy is valid");
    assert_eq!(
        u64::from(policy.broker.quorum_replicas),
        nodes,
        "{}: {nodes} RabbitMQ nodes, but the policy's broker.quorum_replicas is {}: each queue should have a replica on every node",
        rabbit.file,
        policy.broker.quorum_replicas
    );

    let redis = docs_of_kind(world, "StatefulSet")
        .find(in_component)
        .expect("deploy/kubernetes/clusters: no Redis StatefulSet");
    let spec = redis.value.get("spec").expect("a StatefulSet has a spec");
    let redis_nodes = spec
        .get("replicas")
        .and_then(Value::as_u64)
        .expect("the Redis StatefulSet sets replicas");
    assert_eq!(redis_nodes, 6, "{}: 3 masters and 3 replicas", redis.file);
    let service = text(spec.get("serviceName")).expect("the StatefulSet names its Service");
    let pod = |i: u64| format!("{}-{i}.{service}.orderflow.svc:6379", redis.name());
    let create = docs_of_kind(world, "Job")
        .find(in_component)
        .expect("deploy/kubernetes/clusters: no Job creating the Redis Cluster");
    let mut script = Vec::new();
    yaml_strings(&create.value, &mut script);
    let script = script.join("\n");
    assert!(
        script.contains("--cluster create")
            && script.contains("--cluster-replicas 1")
            && script.contains(&format!(
                "for i in {}",
                (0..redis_nodes)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ))
            && script.contains(&format!("{}-$i.{service}.", redis.name())),
        "{}: the Job does not create the cluster from the {redis_nodes} pods of {}",
        create.file,
        redis.name()
    );

    let secret = docs_of_kind(world, "Secret")
        .find(in_component)
        .expect("deploy/kubernetes/clusters: no example Secret");
    let value = |key: &str| {
        text(secret.value.get("stringData").and_then(|d| d.get(key)))
            .unwrap_or_else(|| panic!("{}: no {key}", secret.file))
    };
    let amqp = value("ORDERFLOW_AMQP_URL");
    assert!(
        amqp.contains(&format!("@{}.orderflow.svc:5672/", rabbit.name())),
        "{}: ORDERFLOW_AMQP_URL ({amqp}) does not name the RabbitmqCluster's Service {}",
        secret.file,
        rabbit.name()
    );
    let redis_url = value("ORDERFLOW_REDIS_URL");
    let seeds: Vec<&str> = redis_url
        .split_once('@')
        .map_or(redis_url.as_str(), |(_, hosts)| hosts)
        .split(',')
        .collect();
    assert!(
        redis_url.starts_with("redis+cluster://") && !seeds.is_empty(),
        "{}: ORDERFLOW_REDIS_URL ({redis_url}) is not a cluster URL",
        secret.file
    );
    for seed in seeds {
        assert!(
            (0..redis_nodes).any(|i| seed == pod(i)),
            "{}: ORDERFLOW_REDIS_URL names {seed}, which is no pod of {}",
            secret.file,
            redis.name()
        );
    }
}

#[test]
fn the_help_reader_reads_clap_output() {
    let long = "\
Usage: payment-worker [OPTIONS]

Options:
      --amqp-url <AMQP_URL>
          RabbitMQ URL

          [env: ORDERFLOW_AMQP_URL]
          [default: amqp://guest:guest@127.0.0.1:5672/%2f]

      --log <LOG>
          Log format

          Possible values:
          - text: Human-readable lines
          - json: One JSON object per line

          [env: ORDERFLOW_LOG=]
          [default: text]

      --json
          

  -h, --help
          Print help
";
    let help = parse_help(long);
    assert_eq!(
        help.flags.keys().collect::<Vec<_>>(),
        ["amqp-url", "help", "json", "log"]
    );
    assert_eq!(
        help.flags["amqp-url"].env.as_deref(),
        Some("ORDERFLOW_AMQP_URL")
    );
    assert_eq!(help.flags["log"].env.as_deref(), Some("ORDERFLOW_LOG"));
    assert_eq!(help.flags["log"].default.as_deref(), Some("text"));
    assert!(help.flags["log"].takes_value && !help.flags["json"].takes_value);
    assert_eq!(help.flag_of_env("ORDERFLOW_LOG"), Some("log"));

    let short = "\
Usage: orderctl <COMMAND>

Commands:
  policy      Check, show and explain the fleet policy
  publish     Publish producer messages
  help        Print this message

Options:
      --listen <LISTEN>  Address to listen on [env: ORDERFLOW_SIM_LISTEN=] [default: 127.0.0.1:7070]
  -h, --help     Print help
";
    let help = parse_help(short);
    assert_eq!(
        help.subcommands.iter().collect::<Vec<_>>(),
        ["policy", "publish"]
    );
    assert_eq!(
        help.flags["listen"].env.as_deref(),
        Some("ORDERFLOW_SIM_LISTEN")
    );
    assert_eq!(
        help.flags["listen"].default.as_deref(),
        Some("127.0.0.1:7070")
    );

    assert_eq!(
        identifiers(
            "histogram_quantile(0.99, rate(orderflow_downstream_call_seconds_bucket[5m])) / my_orderflow_x",
            "orderflow_"
        ),
        BTreeSet::from(["orderflow_downstream_call_seconds_bucket".to_owned()])
    );
}
