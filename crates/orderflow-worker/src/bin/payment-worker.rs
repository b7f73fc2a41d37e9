//! The payment stage worker: see `docs/workers.md`.

use orderflow_worker::Role;
use std::process::ExitCode;

fn main() -> ExitCode {
    orderflow_worker::main(Role::Payment)
}
