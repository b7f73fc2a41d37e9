#!/usr/bin/env bash
# Makes sure the browser tests (crates/orderflow-testkit/src/browser.rs) have headless Chromium
# and its WebDriver: Debian's `chromium` and `chromium-driver` packages
# (/usr/bin/chromium, /usr/bin/chromedriver; ORDERFLOW_CHROMIUM and
# ORDERFLOW_CHROMEDRIVER name others). Installs them only when one is
# missing, with apt-get as root or through sudo, running `apt-get update`
# only if the install fails without it; quiet when both are there. Otherwise
# it says what to install and fails. Sourced by scripts/test.sh.
set -euo pipefail

browser_present() {
  local program
  for program in "${ORDERFLOW_CHROMIUM:-/usr/bin/chromium}" "${ORDERFLOW_CHROMEDRIVER:-/usr/bin/chromedriver}"; do
    if [[ $program == */* ]]; then [ -x "$program" ] || return 1
    else command -v "$program" >/dev/null 2>&1 || return 1
    fi
  done
}

browser_apt() { # apt-get arguments…; its output is kept in $browser_apt_log
  local as_root=()
  [ "$(id -u)" = 0 ] || as_root=(sudo)
  browser_apt_log=$("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" 2>&1)
}

ensure_browser() {
  browser_present && return 0
  local packages=(chromium chromium-driver)
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; }; then
    echo "installing ${packages[*]} from the OS packages for the browser tests…" >&2
    browser_apt install -y -qq "${packages[@]}" ||
      { browser_apt update -qq && browser_apt install -y -qq "${packages[@]}"; } ||
      echo "$browser_apt_log" | tail -n 20 >&2
  fi
  browser_present || {
    echo "error: headless Chromium and chromedriver are not installed and could not be installed." >&2
    echo "       Install them (Debian: apt-get install chromium chromium-driver), or point" >&2
    echo "       ORDERFLOW_CHROMIUM and ORDERFLOW_CHROMEDRIVER at a matching pair." >&2
    return 1
  }
}

ensure_browser
