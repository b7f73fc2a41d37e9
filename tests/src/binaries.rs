//! The binaries a fleet runs, found in the target directory of the test
//! executable (`target/<profile>/deps/<test>` → `target/<profile>/<bin>`).
//!
//! `cargo test -p orderflow-e2e` builds this package and its libraries, not
//! other packages' binaries. When one is missing, the first test to need it
//! runs `cargo build --bins -p orderflow-worker -p downstream-sim -p orderctl` once per
//! test executable and says so. Binaries that exist are used as they are:
//! after changing a worker, rebuild it (or set `ORDERFLOW_E2E_REBUILD=1`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The simulator of the three downstream APIs.
pub const SIM: &str = "downstream-sim";

/// The operator's tool, for the tests that act as an operator.
pub const CTL: &str = "orderctl";

/// Every binary a fleet starts, and the operator's tool.
pub const ALL: [&str; 6] = [
    "inventory-worker",
    "payment-worker",
    "shipping-worker",
    "reconciler",
    SIM,
    CTL,
];

/// `target/<profile>`: where cargo put the test executable's siblings.
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let deps = exe.parent().expect("the test executable is in a directory");
    // Test executables live in `deps/`; anything else (a bench harness run
    // from elsewhere) is taken as the profile directory itself.
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps/ has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// The path of binary `name`, building the fleet's binaries first if any
/// is missing. Panics with cargo's exit status if the build fails.
pub fn path(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = target_profile_dir();
    if let Err(why) = BUILT.get_or_init(|| ensure_built(&dir)) {
        panic!("{why}");
    }
    dir.join(name)
}

fn ensure_built(dir: &Path) -> Result<(), String> {
    let missing: Vec<&str> = ALL
        .iter()
        .copied()
        .filter(|bin| !dir.join(bin).is_file())
        .collect();
    let forced = std::env::var_os("ORDERFLOW_E2E_REBUILD").is_some();
    if missing.is_empty() && !forced {
        return Ok(());
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace");
    let cargo = std::env::var("CARGO")
        .ok()
        .or_else(|| option_env!("CARGO").map(str::to_owned))
        .unwrap_or_else(|| "cargo".into());
    // Build only the packages whose binaries are missing: a worker crate
    // that does not compile right now must not keep the simulator away.
    let mut packages = Vec::new();
    if forced || missing.iter().any(|b| *b != SIM && *b != CTL) {
        packages.push("orderflow-worker");
    }
    if forced || missing.contains(&SIM) {
        packages.push("downstream-sim");
    }
    if forced || missing.contains(&CTL) {
        packages.push("orderctl");
    }
    let mut command = Command::new(&cargo);
    command.current_dir(workspace).args(["build", "--bins"]);
    for package in &packages {
        command.args(["-p", package]);
    }
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
    let shown = format!("cargo build --bins -p {}", packages.join(" -p "));
    if forced {
        eprintln!("orderflow-e2e: ORDERFLOW_E2E_REBUILD is set; building once: {shown}");
    } else {
        eprintln!(
            "orderflow-e2e: {} not found in {}; building once: {shown}",
            missing.join(", "),
            dir.display()
        );
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run `{cargo}` to build the fleet's binaries: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`{shown}` failed ({status}); the fleet cannot start"
        ));
    }
    let still: Vec<&str> = ALL
        .iter()
        .copied()
        .filter(|bin| !dir.join(bin).is_file())
        .collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "after building, {} still missing from {}",
            still.join(", "),
            dir.display()
        ))
    }
}
