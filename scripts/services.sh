#!/usr/bin/env bash
# Makes sure RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379) are up for
# the tests and the demo. In order of preference: already running → start the
# installed servers → install them from Debian/Ubuntu packages (as root) →
# `docker compose up` where a Docker engine runs. Otherwise it says what to
# install and fails. Sourced by scripts/test.sh and scripts/demo.sh.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() { # name port seconds
  local i
  for ((i = 0; i < $3 * 2; i++)); do
    port_open "$2" && return 0
    sleep 0.5
  done
  echo "error: $1 did not come up on 127.0.0.1:$2 within $3 s" >&2
  return 1
}

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $* from the OS packages…" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    return 1
  fi
}

docker_up() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 &&
    docker compose -f "$(dirname "${BASH_SOURCE[0]}")/../docker-compose.yml" up -d "$@"
}

ensure_redis() {
  port_open 6379 && return 0
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server || docker_up redis || {
      echo "error: Redis is not running on 127.0.0.1:6379 and could not be installed or started." >&2
      echo "       Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or run a Docker engine." >&2
      return 1
    }
  fi
  if command -v redis-server >/dev/null 2>&1 && ! port_open 6379; then
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null
  fi
  wait_for_port Redis 6379 30
}

ensure_rabbitmq() {
  port_open 5672 && return 0
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    apt_install rabbitmq-server || docker_up rabbitmq || {
      echo "error: RabbitMQ is not running on 127.0.0.1:5672 and could not be installed or started." >&2
      echo "       Install it (Debian/Ubuntu: apt-get install rabbitmq-server; macOS: brew install rabbitmq) or run a Docker engine." >&2
      return 1
    }
  fi
  if command -v rabbitmq-server >/dev/null 2>&1 && ! port_open 5672; then
    rabbitmq-server -detached >/dev/null 2>&1 || true
  fi
  wait_for_port RabbitMQ 5672 90
}

ensure_redis
ensure_rabbitmq
