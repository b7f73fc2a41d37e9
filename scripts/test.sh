#!/usr/bin/env bash
# The test command: services up, headless Chromium installed for the
# browser tests, then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
source scripts/browser.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
