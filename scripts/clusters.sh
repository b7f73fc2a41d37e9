#!/usr/bin/env bash
# A 3-node RabbitMQ cluster and a Redis Cluster (3 masters, 3 replicas) on
# loopback, beside the single RabbitMQ (5672) and Redis (6379) that
# scripts/services.sh runs, which this script never touches. For the cluster
# tests and for trying orderflow on clusters on one machine.
#
#   scripts/clusters.sh up                 both clusters, waits until they serve
#   scripts/clusters.sh down               stop both, delete their state
#   scripts/clusters.sh status             nodes of both, one line each
#   scripts/clusters.sh env                the ORDERFLOW_* lines that point a worker at them
#   scripts/clusters.sh rabbit kill9|start|stop N   one RabbitMQ node (1..3)
#   scripts/clusters.sh rabbit ctl N ARGS…          rabbitmqctl against node N
#   scripts/clusters.sh redis kill9|start PORT      one Redis node (7001..7006)
#
# RabbitMQ node N is rabbitN@localhost with AMQP on 127.0.0.1:570N, the
# management HTTP API on 127.0.0.1:1570N (AMQP port + 10000, as 5672 and
# 15672; `orderctl status` reads queue leaders there) and Erlang
# distribution on 127.0.0.1:2570N. Redis nodes listen on 7001..7006
# (cluster bus on port+10000). State lives under $CLUSTERS_DIR (default
# ${TMPDIR:-/var/tmp}/orderflow-clusters), so a read-only checkout works.
#
# Why it looks like this:
# - Debian's /usr/sbin/rabbitmq* wrappers switch to the system node's user
#   and cookie; the nodes here run /usr/lib/rabbitmq/bin/* directly with a
#   HOME and cookie of their own.
# - Redis Cluster fails a master over after cluster-node-timeout; Redis'
#   default (15 s) would make a test wait ~20 s per kill, so the nodes run
#   with REDIS_NODE_TIMEOUT (default 2000 ms): a failover takes ~4 s here.
# - Both clusters take ~12 s to boot on two cores: start them after a build,
#   not during one.
# - `up` reuses the state a previous run left (a restart takes ~14 s, a
#   first boot ~40 s). State that will not boot (seen once in CI, cause
#   unknown: two of three RabbitMQ nodes died while booting) is shown — the
#   tail of the node's log — then thrown away, and the cluster is built
#   again from nothing, once: these clusters hold only test data.
set -euo pipefail

DIR=${CLUSTERS_DIR:-${TMPDIR:-/var/tmp}/orderflow-clusters}
RMQ_BIN=/usr/lib/rabbitmq/bin
RMQ_NODES=3
REDIS_PORTS=(7001 7002 7003 7004 7005 7006)
REDIS_NODE_TIMEOUT=${REDIS_NODE_TIMEOUT:-2000}

die() { echo "clusters.sh: $*" >&2; exit 1; }

need() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    die "redis-server and redis-cli are needed (Debian: apt-get install redis-server)"
  [ -x "$RMQ_BIN/rabbitmq-server" ] ||
    die "RabbitMQ's $RMQ_BIN/rabbitmq-server is needed (Debian: apt-get install rabbitmq-server)"
}

# ---------------------------------------------------------------- RabbitMQ

rmq_prepare() {
  mkdir -p "$DIR/rabbit/home"
  local cookie="$DIR/rabbit/home/.erlang.cookie"
  if [ ! -f "$cookie" ]; then
    # Erlang refuses a cookie others can read.
    (umask 077 && head -c 30 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$cookie")
    chmod 400 "$cookie"
  fi
  export HOME="$DIR/rabbit/home"
  : >"$DIR/rabbit/env.conf" # not /etc/rabbitmq/rabbitmq-env.conf: the system node's
  export RABBITMQ_CONF_ENV_FILE="$DIR/rabbit/env.conf"
  export ERL_EPMD_ADDRESS=127.0.0.1
}

rmq_name() { echo "rabbit$1@localhost"; }
rmq_ctl() {
  local n=$1
  shift
  "$RMQ_BIN/rabbitmqctl" -q -n "$(rmq_name "$n")" "$@"
}

rmq_node_env() {
  local n=$1 d="$DIR/rabbit/n$1"
  mkdir -p "$d/mnesia" "$d/log"
  printf 'listeners.tcp.default = 127.0.0.1:%s\nmanagement.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %s\n' \
    $((5700 + n)) $((15700 + n)) >"$d/rabbitmq.conf"
  echo '[rabbitmq_management].' >"$d/enabled_plugins"
  export RABBITMQ_NODENAME="$(rmq_name "$n")"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=$((5700 + n))
  export RABBITMQ_DIST_PORT=$((25700 + n))
  export RABBITMQ_MNESIA_BASE="$d/mnesia"
  export RABBITMQ_LOG_BASE="$d/log"
  export RABBITMQ_PID_FILE="$d/beam.pid"
  export RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins"
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

rmq_start() { # boots node N in the background and waits until it serves
  local n=$1 d="$DIR/rabbit/n$1"
  rm -f "$d/beam.pid"
  (
    rmq_node_env "$n"
    cd "$d" # where a crashing node drops its MnesiaCore dump
    setsid nohup "$RMQ_BIN/rabbitmq-server" >"$d/log/stdout.log" 2>&1 </dev/null &
  )
  local i
  for ((i = 0; i < 150; i++)); do
    [ -s "$d/beam.pid" ] && break
    sleep 0.1
  done
  [ -s "$d/beam.pid" ] || { rmq_log "$n"; die "rabbit $n wrote no pid file"; }
  rmq_ctl "$n" wait --timeout 120 "$d/beam.pid" || { rmq_log "$n"; die "rabbit $n did not boot"; }
}

rmq_log() { # why a node did not boot, where CI shows it
  local f
  for f in "$DIR/rabbit/n$1/log/"*.log; do
    echo "--- the last lines of $f" >&2
    tail -n 25 "$f" >&2
  done
}

rmq_join() { # its chatter (tables not created on a node not yet running) goes to a log
  {
    rmq_ctl "$1" stop_app
    rmq_ctl "$1" join_cluster "$(rmq_name 1)"
    rmq_ctl "$1" start_app
    rmq_ctl "$1" await_startup
  } >>"$DIR/rabbit/join.log" 2>&1 || die "rabbit $1 did not join; see $DIR/rabbit/join.log"
}

rmq_pid() { # the node's beam.smp, checked to be ours before anyone kills it
  local n=$1 pid
  pid=$(cat "$DIR/rabbit/n$n/beam.pid" 2>/dev/null) || return 1
  grep -qz "^RABBITMQ_NODENAME=$(rmq_name "$n")$" "/proc/$pid/environ" 2>/dev/null || return 1
  echo "$pid"
}

rmq_up() {
  local n pids=()
  for n in $(seq "$RMQ_NODES"); do
    # A node booted by an older version of this script has no management
    # listener: restart it, one node at a time, so the cluster stays up.
    if rmq_pid "$n" >/dev/null && ! grep -q management "$DIR/rabbit/n$n/enabled_plugins" 2>/dev/null; then
      rmq_ctl "$n" stop "$DIR/rabbit/n$n/beam.pid" >/dev/null
      rmq_start "$n"
    fi
    rmq_pid "$n" >/dev/null && continue
    rmq_start "$n" &
    pids+=($!)
  done
  # Failures return explicitly: `up` retries in a `||` context, where
  # bash ignores set -e.
  for n in "${pids[@]}"; do wait "$n" || return 1; done
  for n in $(seq 2 "$RMQ_NODES"); do
    rmq_ctl 1 cluster_status --formatter json | grep -q "$(rmq_name "$n")" || rmq_join "$n" || return 1
  done
}

rmq_down() {
  local n pid
  for n in $(seq "$RMQ_NODES"); do
    pid=$(rmq_pid "$n") || continue
    (rmq_ctl "$n" stop "$DIR/rabbit/n$n/beam.pid" >/dev/null 2>&1 || kill -9 "$pid") &
  done
  wait
}

# ------------------------------------------------------------------- Redis

redis_start() {
  local p=$1 d="$DIR/redis/$1"
  mkdir -p "$d"
  redis-server --port "$p" --bind 127.0.0.1 --protected-mode yes \
    --cluster-enabled yes --cluster-config-file "$d/nodes.conf" \
    --cluster-node-timeout "$REDIS_NODE_TIMEOUT" \
    --appendonly yes --appendfsync everysec --dir "$d" --save '' \
    --daemonize yes --pidfile "$d/redis.pid" --logfile "$d/redis.log" \
    --repl-diskless-sync-delay 0
  local i
  for ((i = 0; i < 50; i++)); do
    redis-cli -p "$p" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  tail -n 25 "$d/redis.log" >&2
  die "redis $p did not start (the last lines of its log are above)"
}

redis_pid() {
  local p=$1 pid
  pid=$(cat "$DIR/redis/$p/redis.pid" 2>/dev/null) || return 1
  grep -q "redis-server.*:$p" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

redis_up() {
  local p fresh=false
  for p in "${REDIS_PORTS[@]}"; do
    redis_pid "$p" >/dev/null && continue
    [ -f "$DIR/redis/$p/nodes.conf" ] || fresh=true
    redis_start "$p"
  done
  if $fresh; then
    redis-cli --cluster create $(printf '127.0.0.1:%s ' "${REDIS_PORTS[@]}") \
      --cluster-replicas 1 --cluster-yes >/dev/null || return 1
  fi
  for p in "${REDIS_PORTS[@]}"; do
    redis_await "$p" cluster info 'cluster_state:ok' || return 1
    if redis-cli -p "$p" role | head -1 | grep -q slave; then
      redis_await "$p" info replication 'master_link_status:up' || return 1
    fi
  done
}

redis_await() { # PORT COMMAND… PATTERN: up to 60 s for the node to say PATTERN
  local p=$1 pattern=${*: -1} i
  local cmd=("${@:2:$#-2}")
  for ((i = 0; i < 600; i++)); do
    redis-cli -p "$p" "${cmd[@]}" 2>/dev/null | grep -q "$pattern" && return 0
    sleep 0.1
  done
  echo "clusters.sh: redis $p never said $pattern; the last lines of its log:" >&2
  tail -n 25 "$DIR/redis/$p/redis.log" >&2
  return 1
}

redis_down() {
  local p pid pids=()
  for p in "${REDIS_PORTS[@]}"; do
    pid=$(redis_pid "$p") || continue
    pids+=("$pid")
    # NOW FORCE: do not wait for replicas, and stop even a replica still
    # writing its first AOF.
    redis-cli -p "$p" shutdown nosave now force >/dev/null 2>&1 || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    ! kill -0 "$pid" 2>/dev/null || kill -9 "$pid"
  done
}

# -------------------------------------------------------------------- main

env_lines() {
  cat <<'EOF'
ORDERFLOW_AMQP_URL=amqp://guest:guest@127.0.0.1:5701/%2f,amqp://guest:guest@127.0.0.1:5702/%2f,amqp://guest:guest@127.0.0.1:5703/%2f
ORDERFLOW_REDIS_URL=redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
EOF
}

status() {
  local n p
  for n in $(seq "$RMQ_NODES"); do
    if rmq_pid "$n" >/dev/null; then echo "rabbit $n  $(rmq_name "$n")  127.0.0.1:$((5700 + n))  up"; else echo "rabbit $n  $(rmq_name "$n")  127.0.0.1:$((5700 + n))  down"; fi
  done
  for p in "${REDIS_PORTS[@]}"; do
    if redis_pid "$p" >/dev/null; then
      echo "redis  $p  $(redis-cli -p "$p" role 2>/dev/null | head -1)"
    else
      echo "redis  $p  down"
    fi
  done
}

case "${1:-}" in
  up)
    need
    rmq_prepare
    start=$(date +%s%N)
    rmq_up &
    rmq=$!
    if ! (redis_up); then
      echo "clusters.sh: the Redis Cluster did not come up; building it again from nothing" >&2
      redis_down
      rm -rf "$DIR/redis"
      redis_up || die "the Redis Cluster did not come up"
    fi
    if ! wait "$rmq"; then
      echo "clusters.sh: the RabbitMQ cluster did not come up; building it again from nothing" >&2
      rmq_down
      rm -rf "$DIR/rabbit/n"*
      rmq_up || die "the RabbitMQ cluster did not come up"
    fi
    echo "clusters up in $((($(date +%s%N) - start) / 1000000)) ms"
    ;;
  down)
    rmq_prepare
    redis_down
    rmq_down
    rm -rf "$DIR"
    ;;
  status)
    rmq_prepare
    status
    ;;
  env) env_lines ;;
  rabbit)
    rmq_prepare
    case "${2:-} ${3:-}" in
      kill9\ [1-3])
        pid=$(rmq_pid "$3") || die "rabbit $3 is not running"
        kill -9 "$pid"
        echo "killed $(rmq_name "$3") (pid $pid)"
        ;;
      start\ [1-3]) rmq_start "$3" ;;
      stop\ [1-3]) rmq_ctl "$3" stop "$DIR/rabbit/n$3/beam.pid" ;;
      ctl\ [1-3])
        n=$3
        shift 3
        rmq_ctl "$n" "$@"
        ;;
      *) die "usage: clusters.sh rabbit kill9|start|stop|ctl N (N in 1..3)" ;;
    esac
    ;;
  redis)
    case "${2:-} ${3:-}" in
      kill9\ 700[1-6])
        pid=$(redis_pid "$3") || die "redis $3 is not running"
        kill -9 "$pid"
        echo "killed redis $3 (pid $pid)"
        ;;
      start\ 700[1-6]) redis_start "$3" ;;
      *) die "usage: clusters.sh redis kill9|start PORT (PORT in 7001..7006)" ;;
    esac
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
