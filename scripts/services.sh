#!/usr/bin/env bash
# Starts, stops and reports the real servers the integration and e2e tests use.
# All listen on 127.0.0.1 only, on non-default ports; state and logs live under
# build/services/. Starting reuses a server that already answers.
#
#   scripts/services.sh start|stop|status [service...]
#
# Services (default: all): redis (127.0.0.1:6390).
# To add one (Cassandra, a DynamoDB-compatible server, a Redis Cluster): put a
# file in scripts/services.d/ that defines NAME_start, NAME_stop and NAME_status
# and appends NAME to SERVICES (it may use say, die, wait_until, pid_alive).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
STATE_DIR="$ROOT/build/services"
SERVICES=(redis)

REDIS_HOST=127.0.0.1
REDIS_PORT="${FETCHER_TEST_REDIS_PORT:-6390}"
START_TIMEOUT="${SERVICES_START_TIMEOUT:-20}"

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

# wait_until SECONDS DESCRIPTION LOGFILE COMMAND...: polls COMMAND every 0.2 s;
# on timeout prints the log tail and fails.
wait_until() {
  local timeout="$1" what="$2" log="$3"
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      printf 'services: ERROR: %s not ready after %ss; last lines of %s:\n' "$what" "$timeout" "$log" >&2
      tail -n 30 "$log" >&2 2>/dev/null || printf '  (no log)\n' >&2
      exit 1
    fi
    sleep 0.2
  done
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_started STARTED TIMEOUT DESCRIPTION LOGFILE ALIVE READY: polls READY every 0.5 s
# until it succeeds; fails with the log tail as soon as ALIVE fails (the process exited)
# or TIMEOUT seconds after STARTED (a value of $SECONDS).
wait_started() {
  local started="$1" timeout="$2" what="$3" log="$4" alive="$5" ready="$6"
  until "$ready" >/dev/null 2>&1; do
    if ! "$alive"; then
      printf 'services: ERROR: %s exited during startup; last lines of %s:\n' "$what" "$log" >&2
      tail -n 40 "$log" >&2 2>/dev/null
      exit 1
    fi
    if ((SECONDS >= started + timeout)); then
      printf 'services: ERROR: %s not answering after %ss; last lines of %s:\n' \
        "$what" "$timeout" "$log" >&2
      tail -n 40 "$log" >&2 2>/dev/null
      exit 1
    fi
    sleep 0.5
  done
}

# stop_pid PID TRIES INTERVAL: SIGTERM, then SIGKILL when PID still runs after TRIES
# waits of INTERVAL seconds.
stop_pid() {
  local pid="$1" i
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < $2; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep "$3"; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
}

# wait_gone TRIES INTERVAL COMMAND...: waits while COMMAND succeeds (a port still open),
# at most TRIES x INTERVAL seconds; the caller checks COMMAND once more.
wait_gone() {
  local tries="$1" interval="$2" i
  shift 2
  for ((i = 0; i < tries; i++)); do "$@" || break; sleep "$interval"; done
}

# --- redis -------------------------------------------------------------------

redis_pidfile() { echo "$STATE_DIR/redis-$REDIS_PORT.pid"; }
redis_log() { echo "$STATE_DIR/redis-$REDIS_PORT.log"; }

redis_ping() {
  [[ "$(timeout 2 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

redis_start() {
  if redis_ping; then
    say "redis already running on $REDIS_HOST:$REDIS_PORT"
    return
  fi
  command -v redis-server >/dev/null 2>&1 || die "redis-server not installed: run scripts/setup.sh"
  mkdir -p "$STATE_DIR"
  local log pidfile
  log="$(redis_log)"
  pidfile="$(redis_pidfile)"
  : >"$log"
  redis-server \
    --bind "$REDIS_HOST" --port "$REDIS_PORT" --protected-mode yes \
    --save '' --appendonly no \
    --daemonize yes --pidfile "$pidfile" --logfile "$log" --dir "$STATE_DIR" \
    || { tail -n 30 "$log" >&2 2>/dev/null; die "redis-server failed to start"; }
  wait_until "$START_TIMEOUT" "redis on $REDIS_HOST:$REDIS_PORT" "$log" redis_ping
  say "redis started on $REDIS_HOST:$REDIS_PORT (log $log)"
}

redis_stop() {
  local pidfile
  pidfile="$(redis_pidfile)"
  if redis_ping; then
    redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  fi
  if pid_alive "$pidfile"; then
    stop_pid "$(cat "$pidfile")" 50 0.1
  fi
  wait_gone 50 0.1 redis_ping
  redis_ping && die "redis on $REDIS_HOST:$REDIS_PORT still answers after shutdown"
  rm -f "$pidfile"
  say "redis stopped ($REDIS_HOST:$REDIS_PORT)"
}

redis_status() {
  if redis_ping; then
    say "redis: running on $REDIS_HOST:$REDIS_PORT"
  else
    say "redis: stopped ($REDIS_HOST:$REDIS_PORT)"
    return 1
  fi
}

# --- more services ---------------------------------------------------------
# Each file in scripts/services.d/ defines NAME_start/_stop/_status and appends
# NAME to SERVICES, so backends are added without editing this file.
if [[ -d "$ROOT/scripts/services.d" ]]; then
  for service_file in "$ROOT"/scripts/services.d/*.sh; do
    [[ -e "$service_file" ]] || continue
    # shellcheck source=/dev/null
    source "$service_file"
  done
fi

# --- dispatch ----------------------------------------------------------------

usage() { echo "usage: $0 start|stop|status [${SERVICES[*]}]" >&2; exit 2; }

main() {
  (($# >= 1)) || usage
  local action="$1"
  shift
  local names=("$@")
  ((${#names[@]})) || names=("${SERVICES[@]}")
  local name rc=0
  for name in "${names[@]}"; do
    [[ " ${SERVICES[*]} " == *" $name "* ]] || die "unknown service '$name' (known: ${SERVICES[*]})"
  done
  case "$action" in
    start)
      for name in "${names[@]}"; do "${name}_start"; done
      ;;
    stop)
      # Stop every service even when one fails (each runs in a subshell, so its `die`
      # does not end the loop); report failure at the end.
      for name in "${names[@]}"; do ( "${name}_stop" ) || rc=1; done
      return "$rc"
      ;;
    status)
      for name in "${names[@]}"; do "${name}_status" || rc=1; done
      return "$rc"
      ;;
    *) usage ;;
  esac
}

main "$@"
