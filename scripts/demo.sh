#!/usr/bin/env bash
# The main job: services up, a release build of the fleet, then
# `orderflow-fleet demo` — the simulator, the three stage workers and the
# reconciler as processes on the local RabbitMQ and Redis, a demo load of
# 2,000 orders under faults that exercise every row of docs/design.md §4, live
# progress, and a summary ending in the I1–I9 check against the simulator's
# ledger. Extra arguments go to `orderflow-fleet demo` (e.g. --orders 500 --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
# orderctl too: the summary points at `orderctl status` for a kept namespace.
cargo build --release -q -p orderflow-fleet -p orderflow-worker -p downstream-sim -p orderctl
exec target/release/orderflow-fleet demo "$@"
