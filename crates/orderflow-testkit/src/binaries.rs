//! The binaries a fleet runs, found in the target directory of the test
//! executable (`target/<profile>/deps/<test>` → `target/<profile>/<bin>`),
//! and never older than their sources.
//!
//! `cargo test -p X` builds X and its libraries, not other packages'
//! binaries, so a test could run whatever old binary sits in `target/`.
//! Before the first binary is handed out, every one of [`ALL`] is checked:
//! missing, or older than the newest source file of the workspace's crates
//! (or `Cargo.lock`), and `cargo build --bins` runs once per test
//! executable for the packages that need it (cargo itself then decides
//! what really changed). A build that fails fails the test with the
//! command to run. `ORDERFLOW_E2E_REBUILD=1` builds whatever the state.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// The simulator of the three downstream APIs.
pub const SIM: &str = "downstream-sim";

/// The operator's tool, for the tests that act as an operator.
pub const CTL: &str = "orderctl";

/// The workers: one binary each, all of package `orderflow-worker`.
pub const WORKERS: [&str; 4] = [
    "inventory-worker",
    "payment-worker",
    "shipping-worker",
    "reconciler",
];

/// Every binary a fleet starts, and the operator's tool.
pub const ALL: [&str; 6] = [WORKERS[0], WORKERS[1], WORKERS[2], WORKERS[3], SIM, CTL];

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

/// The path of binary `name` (one of [`ALL`]), built first if it or any
/// other of [`ALL`] is missing or stale. Panics with the command to run if
/// the build fails.
pub fn path(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = target_profile_dir();
    if let Err(why) = BUILT.get_or_init(|| ensure_fresh(&dir)) {
        panic!("{why}");
    }
    dir.join(name)
}

/// The package a binary of [`ALL`] is built by.
fn package(binary: &str) -> &'static str {
    match binary {
        SIM => "downstream-sim",
        CTL => "orderctl",
        _ => "orderflow-worker",
    }
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("the test kit is in crates/ of the workspace")
}

fn ensure_fresh(dir: &Path) -> Result<(), String> {
    let forced = std::env::var_os("ORDERFLOW_E2E_REBUILD").is_some();
    let sources = newest_source(workspace());
    let unfit: Vec<(&str, &str)> = ALL
        .iter()
        .copied()
        .filter_map(|bin| {
            let built = std::fs::metadata(dir.join(bin)).and_then(|m| m.modified());
            match built {
                Err(_) => Some((bin, "missing")),
                Ok(at) if sources.is_some_and(|newest| at < newest) => {
                    Some((bin, "older than its sources"))
                }
                Ok(_) if forced => Some((bin, "rebuilt on request")),
                Ok(_) => None,
            }
        })
        .collect();
    if unfit.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = unfit.iter().map(|(bin, _)| package(bin)).collect();
    packages.sort_unstable();
    packages.dedup();
    let profile_flag = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => String::new(),
        Some("release") => " --release".into(),
        Some(profile) => format!(" --profile {profile}"),
    };
    let shown = format!(
        "cargo build{profile_flag} --bins -p {}",
        packages.join(" -p ")
    );
    let why: Vec<String> = unfit
        .iter()
        .map(|(bin, why)| format!("{bin} {why}"))
        .collect();
    eprintln!(
        "orderflow-testkit: {} in {}; building once: {shown}",
        why.join(", "),
        dir.display()
    );
    let cargo = std::env::var("CARGO")
        .ok()
        .or_else(|| option_env!("CARGO").map(str::to_owned))
        .unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace())
        .args(shown.split_whitespace().skip(1));
    if let Some(target) = dir.parent() {
        command.env("CARGO_TARGET_DIR", target);
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run `{cargo}` to build the fleet's binaries: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`{shown}` failed ({status}); the tests will not run stale binaries: fix the build and run it"
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
            "after `{shown}`, {} still missing from {}",
            still.join(", "),
            dir.display()
        ))
    }
}

/// When the newest source the binaries are built from last changed: any
/// file of a crate in `crates/` but its tests (sources, `Cargo.toml`, files
/// it includes such as the default policy), the workspace's `Cargo.toml`
/// and `Cargo.lock`. `None` when none can be read (not run from a
/// checkout): the binaries are then taken as they are.
fn newest_source(workspace: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut note = |path: &Path| {
        if let Ok(at) = std::fs::metadata(path).and_then(|m| m.modified()) {
            newest = Some(newest.map_or(at, |n: SystemTime| n.max(at)));
        }
    };
    note(&workspace.join("Cargo.toml"));
    note(&workspace.join("Cargo.lock"));
    let crates = std::fs::read_dir(workspace.join("crates")).ok()?;
    let mut dirs: Vec<PathBuf> = crates.flatten().map(|krate| krate.path()).collect();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                note(&path);
            } else if entry.file_name() != "tests" {
                dirs.push(path);
            }
        }
    }
    newest
}
