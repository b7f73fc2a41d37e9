//! Why a process ends early, and the exit status that tells a supervisor
//! whether restarting it can help.

use std::fmt;
use std::process::ExitCode;

/// Bad settings or a failed start-up check: restarting with the same
/// settings fails again, so it is not a crash loop to retry blindly.
const EXIT_STARTUP: u8 = 2;
/// An error after start-up: a restart may well succeed.
const EXIT_RUNTIME: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Found before anything was consumed: exit 2.
    Startup(String),
    /// After start-up: exit 1.
    Runtime(String),
}

impl Failure {
    /// A bad setting: what is wrong with it and what to do.
    pub fn setting(
        setting: impl fmt::Display,
        problem: impl fmt::Display,
        fix: impl fmt::Display,
    ) -> Failure {
        Failure::Startup(format!("{setting}: {problem}; {fix}"))
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::Startup(_) => EXIT_STARTUP,
            Failure::Runtime(_) => EXIT_RUNTIME,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Startup(text) | Failure::Runtime(text) => f.write_str(text),
        }
    }
}
