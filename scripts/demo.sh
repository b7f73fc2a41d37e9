#!/usr/bin/env bash
# The main job, as far as the fleet is built: services up, release build, then
# the stage policy engine walked through every row of DESIGN.md §4 with the
# built-in policy. When the worker binaries land this becomes `orderctl demo`
# (the whole fleet on a demo load against the simulator).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
cargo build --release -q -p orderctl
orderctl=target/release/orderctl

"$orderctl" policy check default
echo
row() { # title, explain args…
  local title=$1
  shift
  printf '%-60s → %s\n' "$title" "$("$orderctl" policy explain "$@" |
    awk '/^decision:/ { d = substr($0, 12) } /^rule:/ { r = substr($0, 12) } END { print d "  [" r "]" }')"
}
row "inventory: reserved" --stage inventory --class success --certainty applied
row "inventory: insufficient stock" --stage inventory --class business_rejection --certainty not_applied --code insufficient_stock
row "inventory: timeout" --stage inventory --class timeout --certainty unknown
row "inventory: timeout, status query still unknown" --stage inventory --class timeout --certainty unknown --queried
row "inventory: 503, first attempt" --stage inventory --class overloaded --certainty not_applied
row "inventory: 503, breaker open" --stage inventory --class overloaded --certainty not_applied --breaker-open
row "inventory: reserved, but the order was cancelled meanwhile" --stage inventory --class success --certainty applied --cancelled
row "payment: authorised" --stage payment --class success --certainty applied
row "payment: card declined" --stage payment --class business_rejection --certainty not_applied --code card_declined
row "payment: timeout" --stage payment --class timeout --certainty unknown
row "payment: still processing after the status query" --stage payment --class success --certainty unknown --code processing --queried
row "payment: unknown for 31 minutes" --stage payment --class timeout --certainty unknown --queried --elapsed 31m
row "payment: failed after the shipment was accepted" --stage payment --class business_rejection --certainty not_applied --shipment-accepted
row "shipping: accepted" --stage shipping --class success --certainty applied
row "shipping: unsupported destination" --stage shipping --class business_rejection --certainty not_applied --code unsupported_destination
row "shipping: timeout" --stage shipping --class timeout --certainty unknown
row "shipping: status query found nothing" --stage shipping --class transient --certainty not_applied --queried
row "shipping: fulfilment exception" --stage shipping --fulfilment exception
row "shipping: no progress for 2 hours" --stage shipping --fulfilment packed --elapsed 2h
row "any: unknown, not idempotent, no status query" --stage payment --class timeout --certainty unknown --idempotent false --status-query false
echo
echo "naive baseline on the same unknown shipping outcome, 4th attempt:"
row "shipping: timeout (naive)" --stage shipping --class timeout --certainty unknown --attempt 4 --policy naive
