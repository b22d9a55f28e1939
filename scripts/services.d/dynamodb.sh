# shellcheck shell=bash
# DynamoDB-compatible test server: moto in server mode (in-memory, nothing persists)
# on 127.0.0.1:8100, from the project's venv. Sourced by scripts/services.sh.
DYNAMODB_HOST=127.0.0.1
DYNAMODB_PORT="${FETCHER_TEST_DYNAMODB_PORT:-8100}"
DYNAMODB_VENV="$ROOT/${VENV:-.venv}"
SERVICES+=(dynamodb)

dynamodb_pidfile() { echo "$STATE_DIR/dynamodb-$DYNAMODB_PORT.pid"; }
dynamodb_log() { echo "$STATE_DIR/dynamodb-$DYNAMODB_PORT.log"; }

# Answers a DynamoDB ListTables call (moto routes by the credential scope, so the
# request carries a SigV4-shaped Authorization header; moto does not check it).
dynamodb_ping() {
  "$DYNAMODB_VENV/bin/python" - "$DYNAMODB_HOST" "$DYNAMODB_PORT" <<'EOF' >/dev/null 2>&1
import json, sys, urllib.request
request = urllib.request.Request(
    f"http://{sys.argv[1]}:{sys.argv[2]}/", data=b"{}", method="POST",
    headers={
        "X-Amz-Target": "DynamoDB_20120810.ListTables",
        "Content-Type": "application/x-amz-json-1.0",
        "Authorization": "AWS4-HMAC-SHA256 Credential=fetcher-local/20240101/"
        "us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
    },
)
with urllib.request.urlopen(request, timeout=2) as reply:
    assert "TableNames" in json.load(reply)
EOF
}

dynamodb_start() {
  if dynamodb_ping; then
    say "dynamodb (moto) already running on $DYNAMODB_HOST:$DYNAMODB_PORT"
    return
  fi
  local bin="$DYNAMODB_VENV/bin/moto_server" log pidfile
  [[ -x "$bin" ]] || die "$bin not installed: run scripts/setup.sh (moto[server] is a dev dependency)"
  mkdir -p "$STATE_DIR"
  log="$(dynamodb_log)"
  pidfile="$(dynamodb_pidfile)"
  if pid_alive "$pidfile"; then
    # Started earlier and still booting: wait for it rather than start a second one.
    wait_until "$START_TIMEOUT" "dynamodb (moto) on $DYNAMODB_HOST:$DYNAMODB_PORT" "$log" dynamodb_ping
    say "dynamodb (moto) running on $DYNAMODB_HOST:$DYNAMODB_PORT (log $log)"
    return
  fi
  : >"$log"
  nohup "$bin" -H "$DYNAMODB_HOST" -p "$DYNAMODB_PORT" </dev/null >>"$log" 2>&1 &
  echo $! >"$pidfile"
  wait_until "$START_TIMEOUT" "dynamodb (moto) on $DYNAMODB_HOST:$DYNAMODB_PORT" "$log" dynamodb_ping
  say "dynamodb (moto) started on $DYNAMODB_HOST:$DYNAMODB_PORT (log $log)"
}

dynamodb_stop() {
  local pidfile
  pidfile="$(dynamodb_pidfile)"
  if pid_alive "$pidfile"; then
    stop_pid "$(cat "$pidfile")" 50 0.1
  fi
  rm -f "$pidfile"
  if dynamodb_ping; then
    die "dynamodb on $DYNAMODB_HOST:$DYNAMODB_PORT still answers but was not started by this script (no pid file): stop that process yourself"
  fi
  say "dynamodb (moto) stopped ($DYNAMODB_HOST:$DYNAMODB_PORT)"
}

dynamodb_status() {
  if dynamodb_ping; then
    say "dynamodb: running on $DYNAMODB_HOST:$DYNAMODB_PORT"
  else
    say "dynamodb: stopped ($DYNAMODB_HOST:$DYNAMODB_PORT)"
    return 1
  fi
}
