#!/usr/bin/env bash
# The test command: services up, headless Chromium installed for the
# browser tests, then formatting, lints, the build, the clusters of
# scripts/clusters.sh (after the build: they boot slowly on two cores; the
# store's tests also run on its Redis Cluster) and every test.
#
# `scripts/test.sh --fast`: services up, then the unit tests and the
# in-process integration tests only (RabbitMQ and Redis, no worker
# processes, no browser) — the quick loop while editing. CI runs the full
# command.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "") fast=false ;;
  --fast) fast=true ;;
  *)
    echo "usage: scripts/test.sh [--fast]" >&2
    exit 2
    ;;
esac
source scripts/services.sh
if $fast; then
  # Every crate's unit tests, then the integration tests that run the code
  # in the test process: all of these crates' own, and the runtime's and
  # the stages' pipelines (not the runtime's crash test, which kills worker
  # processes). The fleet tests (`tests/`, orderflow-worker, orderflow-bench,
  # orderflow-fleet, orderctl) run only in the full command.
  cargo test --workspace --lib --bins
  in_process=(-p orderflow-core -p orderflow-downstream -p orderflow-store
    -p orderflow-broker -p orderflow-ops -p orderflow-console -p downstream-sim)
  # The store's tests also run on a Redis Cluster; the clusters boot after
  # the build, not during it (two cores).
  cargo test "${in_process[@]}" --test '*' --no-run
  scripts/clusters.sh up
  cargo test "${in_process[@]}" --test '*'
  cargo test -p orderflow-runtime --test pipeline
  cargo test -p orderflow-stages --test flow --test retention --test dry_run
  exit 0
fi
source scripts/browser.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-run
scripts/clusters.sh up
cargo test --workspace
