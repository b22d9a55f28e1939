# shellcheck shell=bash
# Redis Cluster for the integration tests: three masters (no replicas) on
# 127.0.0.1:7001-7003, sourced by scripts/services.sh (uses say, die, wait_until,
# STATE_DIR, START_TIMEOUT).
#
#   scripts/services.sh start|stop|status redis_cluster
#
# FETCHER_TEST_REDIS_CLUSTER_PORTS="7011,7012,7013" picks other ports (at least 3;
# each port + 10000 is that node's cluster bus port). Node state and logs live in
# build/services/redis-cluster/<port>/.
#
# start is idempotent: it reuses a healthy cluster, restarts nodes that are down
# (they rejoin from their nodes.conf) and creates the cluster only when every node
# is new. stop shuts the nodes down and forgets the cluster (nodes.conf), so the
# next start creates a fresh one; the data is never persisted.

SERVICES+=(redis_cluster)

REDIS_CLUSTER_HOST=127.0.0.1
IFS=', ' read -r -a REDIS_CLUSTER_PORTS <<<"${FETCHER_TEST_REDIS_CLUSTER_PORTS:-7001,7002,7003}"
REDIS_CLUSTER_DIR="$STATE_DIR/redis-cluster"
# Redis's default, said out loud: a node down for less than this is never marked
# FAIL, and a master with slots and no replica stays FAIL for 2x this after it
# is back, which would stall the node-restart tests for half a minute.
REDIS_CLUSTER_NODE_TIMEOUT_MS=15000

redis_cluster_cli() {
  local port="$1"
  shift
  timeout 2 redis-cli -h "$REDIS_CLUSTER_HOST" -p "$port" "$@" 2>/dev/null
}

redis_cluster_node_dir() { echo "$REDIS_CLUSTER_DIR/$1"; }

redis_cluster_node_ping() { [[ "$(redis_cluster_cli "$1" ping)" == PONG ]]; }

# redis_cluster_info PORT FIELD: one field of CLUSTER INFO ("" when not answering).
redis_cluster_info() {
  { redis_cluster_cli "$1" cluster info || true; } | tr -d '\r' | sed -n "s/^$2://p"
}

# Healthy: every node answers, sees all the others and says cluster_state:ok.
redis_cluster_healthy() {
  local port
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do
    [[ "$(redis_cluster_info "$port" cluster_state)" == ok ]] || return 1
    [[ "$(redis_cluster_info "$port" cluster_known_nodes)" == "${#REDIS_CLUSTER_PORTS[@]}" ]] \
      || return 1
  done
}

redis_cluster_check_ports() {
  ((${#REDIS_CLUSTER_PORTS[@]} >= 3)) \
    || die "redis_cluster needs at least 3 ports, got '${REDIS_CLUSTER_PORTS[*]}' (FETCHER_TEST_REDIS_CLUSTER_PORTS)"
  local port
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do
    [[ "$port" =~ ^[0-9]+$ ]] && ((port >= 1024 && port + 10000 <= 65535)) \
      || die "redis_cluster port '$port' must be 1024..55535 (its bus port is port + 10000)"
  done
}

redis_cluster_start_node() {
  local port="$1" dir log
  dir="$(redis_cluster_node_dir "$port")"
  log="$dir/redis.log"
  if redis_cluster_node_ping "$port"; then
    # A standalone redis-server on this port would make `cluster create` fail late.
    [[ -n "$(redis_cluster_info "$port" cluster_state)" ]] \
      || die "127.0.0.1:$port answers but is not in cluster mode: stop it or pick other ports (FETCHER_TEST_REDIS_CLUSTER_PORTS)"
    return
  fi
  mkdir -p "$dir"
  : >"$log"
  redis-server \
    --bind "$REDIS_CLUSTER_HOST" --port "$port" --protected-mode yes \
    --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout "$REDIS_CLUSTER_NODE_TIMEOUT_MS" \
    --save '' --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$log" --dir "$dir" \
    || { tail -n 30 "$log" >&2 2>/dev/null; die "redis-server (cluster node $port) failed to start"; }
  wait_until "$START_TIMEOUT" "redis cluster node $REDIS_CLUSTER_HOST:$port" "$log" \
    redis_cluster_node_ping "$port"
  say "redis cluster node started on $REDIS_CLUSTER_HOST:$port (log $log)"
}

redis_cluster_start() {
  command -v redis-server >/dev/null 2>&1 || die "redis-server not installed: run scripts/setup.sh"
  redis_cluster_check_ports
  local where="$REDIS_CLUSTER_HOST:${REDIS_CLUSTER_PORTS[*]}"
  if redis_cluster_healthy; then
    say "redis cluster already running on ${where// /,}"
    return
  fi
  local port
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do redis_cluster_start_node "$port"; done

  # A node with slots belongs to a cluster created earlier: it (and any node that
  # was restarted from its nodes.conf) rejoins by itself. Only all-new nodes are
  # joined with `cluster create`; a mix cannot be repaired safely.
  local new=() member=()
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do
    if [[ "$(redis_cluster_info "$port" cluster_slots_assigned)" == 0 \
      && "$(redis_cluster_info "$port" cluster_known_nodes)" == 1 ]]; then
      new+=("$port")
    else
      member+=("$port")
    fi
  done
  if ((${#member[@]} == 0)); then
    local addresses=()
    for port in "${REDIS_CLUSTER_PORTS[@]}"; do addresses+=("$REDIS_CLUSTER_HOST:$port"); done
    local log="$REDIS_CLUSTER_DIR/create.log"
    redis-cli --cluster create "${addresses[@]}" --cluster-replicas 0 --cluster-yes >"$log" 2>&1 \
      || { tail -n 30 "$log" >&2; die "redis-cli --cluster create failed (log $log)"; }
  elif ((${#new[@]} > 0)); then
    die "redis cluster nodes ${new[*]} are new but ${member[*]} belong to a cluster: run 'scripts/services.sh stop redis_cluster' and start again"
  fi
  wait_until "$START_TIMEOUT" "redis cluster on ${where// /,} (cluster_state:ok on every node)" \
    "$(redis_cluster_node_dir "${REDIS_CLUSTER_PORTS[0]}")/redis.log" redis_cluster_healthy
  say "redis cluster ready on ${where// /,}"
}

redis_cluster_stop() {
  local port dir
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do
    dir="$(redis_cluster_node_dir "$port")"
    if redis_cluster_node_ping "$port"; then
      redis_cluster_cli "$port" shutdown nosave >/dev/null || true
    fi
    if pid_alive "$dir/redis.pid"; then
      stop_pid "$(cat "$dir/redis.pid")" 50 0.1
    fi
    wait_gone 50 0.1 redis_cluster_node_ping "$port"
    redis_cluster_node_ping "$port" && die "redis cluster node $port still answers after shutdown"
    # Forget the cluster: the next start creates a fresh one.
    rm -f "$dir/redis.pid" "$dir/nodes.conf"
  done
  say "redis cluster stopped ($REDIS_CLUSTER_HOST:${REDIS_CLUSTER_PORTS[*]})"
}

redis_cluster_status() {
  local port rc=0 state
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do
    if ! redis_cluster_node_ping "$port"; then
      say "redis_cluster: node $REDIS_CLUSTER_HOST:$port stopped"
      rc=1
      continue
    fi
    state="$(redis_cluster_info "$port" cluster_state)"
    say "redis_cluster: node $REDIS_CLUSTER_HOST:$port running, cluster_state:${state:-?}"
    [[ "$state" == ok ]] || rc=1
  done
  return "$rc"
}
