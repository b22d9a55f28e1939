# shellcheck shell=bash
# Apache Kafka 4.4 (one node, KRaft: broker and controller in one process) for
# the stream tests: the broker on 127.0.0.1:19092, the controller on
# 127.0.0.1:19093. Sourced by scripts/services.sh, which provides ROOT,
# STATE_DIR, SERVICES, say, die, wait_until and pid_alive.
#
# The broker's jars come from Maven Central once (scripts/kafka/pom.xml) into
# .tools/kafka/<version>/lib, outside build/ so `make clean` keeps them. Every
# start formats a fresh data directory (kafka.tools.StorageTool, a new cluster
# id): topics and committed offsets of an earlier run never leak into a new
# one. KAFKA_KEEP_DATA=1 starts on the data a previous start left (the broker
# restart test stops and starts a broker of its own this way).
#
# Environment:
#   FETCHER_TEST_KAFKA_PORT             broker port (default 19092)
#   FETCHER_TEST_KAFKA_CONTROLLER_PORT  controller port (default: broker port + 1)
#   KAFKA_START_TIMEOUT                 seconds to wait for the broker (default 120)
#   KAFKA_KEEP_DATA                     1: keep the data directory of the last start
#   KAFKA_JAVA                          java binary (default: java on PATH, 17 or newer)

KAFKA_VERSION=4.4.0
KAFKA_HOST=127.0.0.1
KAFKA_PORT="${FETCHER_TEST_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${FETCHER_TEST_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
KAFKA_LIB="$ROOT/.tools/kafka/$KAFKA_VERSION/lib"
KAFKA_STATE="$STATE_DIR/kafka-$KAFKA_PORT"
KAFKA_PIDFILE="$KAFKA_STATE/kafka.pid"
KAFKA_LOG="$KAFKA_STATE/kafka.log"
SERVICES+=(kafka)

# A small heap: the machine also runs Cassandra and Spark.
KAFKA_HEAP_OPTS=(-Xms128m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=50
  -XX:+ExitOnOutOfMemoryError -XX:+PerfDisableSharedMem -Djava.awt.headless=true)

kafka_java() {
  # Kafka 4 brokers need Java 17 or newer.
  local candidate version
  for candidate in "${KAFKA_JAVA:-}" "$(command -v java 2>/dev/null)" \
    /usr/lib/jvm/java-17-openjdk-amd64/bin/java /usr/lib/jvm/java-17-openjdk-arm64/bin/java; do
    [[ -n "$candidate" && -x "$candidate" ]] || continue
    version="$("$candidate" -XshowSettings:properties -version 2>&1 \
      | sed -n 's/^ *java.specification.version = //p')"
    if [[ "$version" =~ ^[0-9]+$ ]] && ((version >= 17)); then
      echo "$candidate"
      return
    fi
  done
  die "kafka: no Java 17 or newer found (Kafka 4 needs one): install openjdk-17-jdk-headless or set KAFKA_JAVA"
}

kafka_fetch() {
  # Once per version: the marker is written only after a complete copy.
  [[ -f "$KAFKA_LIB/.complete" ]] && return
  command -v mvn >/dev/null 2>&1 || die "kafka: mvn not found: install maven (needed once to fetch Kafka's jars)"
  local tmp="$KAFKA_LIB.tmp"
  rm -rf "$tmp"
  say "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIB"
  mvn -q -B -Dstyle.color=never -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -Dkafka.version="$KAFKA_VERSION" -DoutputDirectory="$tmp" \
    || die "kafka: fetching the jars failed (see the mvn output above)"
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] \
    || die "kafka: kafka_2.13-$KAFKA_VERSION.jar missing after mvn"
  touch "$tmp/.complete"
  rm -rf "$KAFKA_LIB"
  mv "$tmp" "$KAFKA_LIB"
}

# Alive and really our broker: a stale pid file may name a reused pid.
kafka_alive() {
  pid_alive "$KAFKA_PIDFILE" \
    && grep -q "kafka.Kafka" "/proc/$(cat "$KAFKA_PIDFILE")/cmdline" 2>/dev/null
}

kafka_port_open() {
  (exec 3<>"/dev/tcp/$KAFKA_HOST/$KAFKA_PORT") 2>/dev/null
}

# The readiness check uses the project's venv (confluent-kafka); sets KAFKA_PY.
kafka_find_python() {
  local venv="${VENV:-.venv}"
  [[ "$venv" == /* ]] || venv="$ROOT/$venv"
  [[ -x "$venv/bin/python" ]] || die "kafka: $venv/bin/python missing: run scripts/setup.sh"
  KAFKA_PY="$venv/bin/python"
}

# True when the broker answers a metadata request and lists itself (the port
# opens before the broker is unfenced and serves).
kafka_ready() {
  kafka_port_open || return 1
  timeout 20 "$KAFKA_PY" - "$KAFKA_HOST:$KAFKA_PORT" <<'PY'
import sys
from confluent_kafka.admin import AdminClient

admin = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0})
meta = admin.list_topics(timeout=5)
sys.exit(0 if meta.brokers else 1)
PY
}

kafka_write_config() {
  cat >"$KAFKA_STATE/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_STATE/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
}

# A Kafka cluster id: 16 random bytes, URL-safe base64 without padding. One that starts
# with '-' would be read as an option by the storage tool's parser (1 start in 64 failed
# so), so those are drawn again.
kafka_cluster_id() {
  local id=-
  while [[ "$id" == -* ]]; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  done
  printf '%s' "$id"
}

kafka_start() {
  kafka_find_python
  if kafka_ready >/dev/null 2>&1; then
    say "kafka already running on $KAFKA_HOST:$KAFKA_PORT"
    return
  fi
  local started=$SECONDS
  if ! kafka_alive; then
    local java
    java="$(kafka_java)"
    kafka_fetch
    kafka_port_open && die "kafka: $KAFKA_HOST:$KAFKA_PORT is taken by something that is not a Kafka broker"
    if [[ "${KAFKA_KEEP_DATA:-}" == 1 && -f "$KAFKA_STATE/data/meta.properties" ]]; then
      say "kafka: starting on the data of the last start (KAFKA_KEEP_DATA=1)"
    else
      rm -rf "$KAFKA_STATE"
      mkdir -p "$KAFKA_STATE/data"
      kafka_write_config
      "$java" -Xmx256m -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.xml" \
        -cp "$KAFKA_LIB/*" kafka.tools.StorageTool format --standalone \
        -t "$(kafka_cluster_id)" -c "$KAFKA_STATE/server.properties" \
        >"$KAFKA_STATE/format.log" 2>&1 \
        || { tail -n 20 "$KAFKA_STATE/format.log" >&2; die "kafka: formatting the data directory failed"; }
    fi
    # setsid: the broker outlives this script and ignores the terminal's signals.
    setsid "$java" "${KAFKA_HEAP_OPTS[@]}" \
      -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.xml" \
      -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_STATE/server.properties" \
      </dev/null >>"$KAFKA_LOG" 2>&1 &
    echo $! >"$KAFKA_PIDFILE"
  fi
  wait_started "$started" "$KAFKA_START_TIMEOUT" "kafka" "$KAFKA_LOG" kafka_alive kafka_ready
  say "kafka $KAFKA_VERSION started on $KAFKA_HOST:$KAFKA_PORT in $((SECONDS - started))s (log $KAFKA_LOG)"
}

kafka_stop() {
  if kafka_alive; then
    # SIGTERM: a controlled shutdown (the log is flushed, so KAFKA_KEEP_DATA
    # restarts find every acknowledged message); killed after 30 s.
    stop_pid "$(cat "$KAFKA_PIDFILE")" 150 0.2
  fi
  wait_gone 50 0.2 kafka_port_open
  kafka_port_open && die "kafka: $KAFKA_HOST:$KAFKA_PORT still open after stop (not started by this script?)"
  rm -f "$KAFKA_PIDFILE"
  say "kafka stopped ($KAFKA_HOST:$KAFKA_PORT)"
}

kafka_status() {
  kafka_find_python
  if kafka_ready >/dev/null 2>&1; then
    say "kafka: running on $KAFKA_HOST:$KAFKA_PORT"
  elif kafka_alive; then
    say "kafka: starting (pid $(cat "$KAFKA_PIDFILE"), not answering yet)"
    return 1
  else
    say "kafka: stopped ($KAFKA_HOST:$KAFKA_PORT)"
    return 1
  fi
}
