#!/usr/bin/env bash
# The main job: services up, a release build of the fleet, then
# `orderctl demo` — the simulator, the three stage workers and the
# reconciler as processes on the local RabbitMQ and Redis, a demo load of
# 2,000 orders under faults that exercise every row of docs/design.md §4, live
# progress, and a summary ending in the I1–I9 check against the simulator's
# ledger. Extra arguments go to `orderctl demo` (e.g. --orders 500 --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
cargo build --release -q -p orderctl -p orderflow-worker -p downstream-sim
exec target/release/orderctl demo "$@"
