# shellcheck shell=bash
# Apache Cassandra 5.0 (one node) for the integration tests: CQL on
# 127.0.0.1:9142, storage (gossip) on 127.0.0.1:7100, no JMX. Sourced by
# scripts/services.sh, which provides ROOT, STATE_DIR, SERVICES, say, die,
# wait_until and pid_alive.
#
# The server's jars come from Maven Central once (scripts/cassandra/pom.xml)
# into .tools/cassandra/<version>/lib, outside build/ so `make clean` keeps
# them. Every start begins from empty data directories: the tests create what
# they need, and a stale schema can never make a start fail.
#
# Environment:
#   FETCHER_TEST_CASSANDRA_PORT          CQL port (default 9142)
#   FETCHER_TEST_CASSANDRA_STORAGE_PORT  storage port (default 7100)
#   CASSANDRA_START_TIMEOUT              seconds to wait for CQL (default 180)
#   CASSANDRA_JAVA                       java binary (default: a Java 17 or 11)

CASSANDRA_VERSION=5.0.9
CASSANDRA_HOST=127.0.0.1
CASSANDRA_CQL_PORT="${FETCHER_TEST_CASSANDRA_PORT:-9142}"
CASSANDRA_STORAGE_PORT="${FETCHER_TEST_CASSANDRA_STORAGE_PORT:-7100}"
CASSANDRA_START_TIMEOUT="${CASSANDRA_START_TIMEOUT:-180}"
CASSANDRA_LIB="$ROOT/.tools/cassandra/$CASSANDRA_VERSION/lib"
CASSANDRA_STATE="$STATE_DIR/cassandra-$CASSANDRA_CQL_PORT"
CASSANDRA_PIDFILE="$CASSANDRA_STATE/cassandra.pid"
CASSANDRA_LOG="$CASSANDRA_STATE/cassandra.log"
SERVICES+=(cassandra)

# What Cassandra's conf/jvm17-server.options (5.0) sets, less GC logging: the
# module exports/opens it needs on Java 17 (it fails to start without them)
# and its Netty settings. Java 11 accepts them too.
CASSANDRA_JPMS_OPTS=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true
  -Dio.netty.allocator.useCacheForAllThreads=true
  -Dio.netty.allocator.maxOrder=11
)

# A small heap for a 2-core shared machine; G1 as Cassandra configures it.
CASSANDRA_HEAP_OPTS=(
  -Xms512m -Xmx1g
  -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
  -XX:G1HeapRegionSize=16m -XX:MaxGCPauseMillis=300
  -XX:+ExitOnOutOfMemoryError -XX:+PerfDisableSharedMem
)

cassandra_java() {
  # Cassandra 5.0 runs on Java 11 or 17 only; the machine may also carry newer JDKs.
  local candidate version
  for candidate in "${CASSANDRA_JAVA:-}" "$(command -v java 2>/dev/null)" \
    /usr/lib/jvm/java-17-openjdk-amd64/bin/java /usr/lib/jvm/java-17-openjdk-arm64/bin/java; do
    [[ -n "$candidate" && -x "$candidate" ]] || continue
    version="$("$candidate" -XshowSettings:properties -version 2>&1 \
      | sed -n 's/^ *java.specification.version = //p')"
    if [[ "$version" == 17 || "$version" == 11 ]]; then
      echo "$candidate"
      return
    fi
  done
  die "cassandra: no Java 17 (or 11) found (Cassandra 5.0 needs one): install openjdk-17-jdk-headless or set CASSANDRA_JAVA"
}

cassandra_fetch() {
  # Once per version: the marker is written only after a complete copy.
  [[ -f "$CASSANDRA_LIB/.complete" ]] && return
  command -v mvn >/dev/null 2>&1 || die "cassandra: mvn not found: install maven (needed once to fetch Cassandra's jars)"
  local tmp="$CASSANDRA_LIB.tmp"
  rm -rf "$tmp"
  say "fetching Apache Cassandra $CASSANDRA_VERSION jars from Maven Central into $CASSANDRA_LIB"
  mvn -q -B -Dstyle.color=never -f "$ROOT/scripts/cassandra/pom.xml" dependency:copy-dependencies \
    -Dcassandra.version="$CASSANDRA_VERSION" -DoutputDirectory="$tmp" \
    || die "cassandra: fetching the jars failed (see the mvn output above)"
  [[ -f "$tmp/cassandra-all-$CASSANDRA_VERSION.jar" ]] \
    || die "cassandra: cassandra-all-$CASSANDRA_VERSION.jar missing after mvn"
  touch "$tmp/.complete"
  rm -rf "$CASSANDRA_LIB"
  mv "$tmp" "$CASSANDRA_LIB"
}

# Alive and really our server: a stale pid file may name a reused pid.
cassandra_alive() {
  pid_alive "$CASSANDRA_PIDFILE" \
    && grep -q CassandraDaemon "/proc/$(cat "$CASSANDRA_PIDFILE")/cmdline" 2>/dev/null
}

cassandra_port_open() {
  (exec 3<>"/dev/tcp/$CASSANDRA_HOST/$CASSANDRA_CQL_PORT") 2>/dev/null
}

# The readiness check uses the project's venv (cassandra-driver); sets CASSANDRA_PY.
cassandra_find_python() {
  local venv="${VENV:-.venv}"
  [[ "$venv" == /* ]] || venv="$ROOT/$venv"
  [[ -x "$venv/bin/python" ]] || die "cassandra: $venv/bin/python missing: run scripts/setup.sh"
  CASSANDRA_PY="$venv/bin/python"
}

# True when a CQL query answers (not just an open port: the port opens before
# the node serves queries).
cassandra_cql_ready() {
  cassandra_port_open || return 1
  timeout 20 "$CASSANDRA_PY" - "$CASSANDRA_HOST" "$CASSANDRA_CQL_PORT" <<'PY'
import sys
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy

profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy())
cluster = Cluster([sys.argv[1]], port=int(sys.argv[2]), connect_timeout=3,
                  control_connection_timeout=3, protocol_version=5,
                  execution_profiles={EXEC_PROFILE_DEFAULT: profile})
try:
    cluster.connect().execute("SELECT release_version FROM system.local", timeout=3)
finally:
    cluster.shutdown()
PY
}

cassandra_write_config() {
  sed -e "s|@STATE_DIR@|$CASSANDRA_STATE|g" \
    -e "s|@CQL_PORT@|$CASSANDRA_CQL_PORT|g" \
    -e "s|@STORAGE_PORT@|$CASSANDRA_STORAGE_PORT|g" \
    "$ROOT/scripts/cassandra/cassandra.yaml.in" >"$CASSANDRA_STATE/cassandra.yaml"
  cp "$ROOT/scripts/cassandra/logback.xml" "$CASSANDRA_STATE/logback.xml"
}

cassandra_start() {
  cassandra_find_python
  if cassandra_cql_ready; then
    say "cassandra already running on $CASSANDRA_HOST:$CASSANDRA_CQL_PORT"
    return
  fi
  local started=$SECONDS
  if ! cassandra_alive; then
    local java
    java="$(cassandra_java)"
    cassandra_fetch
    cassandra_port_open && die "cassandra: $CASSANDRA_HOST:$CASSANDRA_CQL_PORT is taken by something that does not answer CQL"
    rm -rf "$CASSANDRA_STATE"
    mkdir -p "$CASSANDRA_STATE"/{data,commitlog,saved_caches,hints,cdc_raw}
    cassandra_write_config
    # setsid: the server outlives this script and ignores the terminal's signals.
    # cassandra-foreground keeps the server's stdout open for the log.
    setsid "$java" \
      "${CASSANDRA_JPMS_OPTS[@]}" "${CASSANDRA_HEAP_OPTS[@]}" \
      -javaagent:"$CASSANDRA_LIB/jamm-0.4.0.jar" \
      -Djava.net.preferIPv4Stack=true \
      -Dcassandra.config="file://$CASSANDRA_STATE/cassandra.yaml" \
      -Dcassandra.storagedir="$CASSANDRA_STATE" \
      -Dcassandra.logdir="$CASSANDRA_STATE" \
      -Dlogback.configurationFile="$CASSANDRA_STATE/logback.xml" \
      -Dcassandra-foreground=yes \
      -Dcassandra.skip_wait_for_gossip_to_settle=0 \
      -Dcassandra.load_ring_state=false \
      -cp "$CASSANDRA_LIB/*" \
      org.apache.cassandra.service.CassandraDaemon \
      </dev/null >"$CASSANDRA_LOG" 2>&1 &
    echo $! >"$CASSANDRA_PIDFILE"
  fi
  wait_started "$started" "$CASSANDRA_START_TIMEOUT" "cassandra" "$CASSANDRA_LOG" cassandra_alive cassandra_cql_ready
  say "cassandra $CASSANDRA_VERSION started on $CASSANDRA_HOST:$CASSANDRA_CQL_PORT in $((SECONDS - started))s (log $CASSANDRA_LOG)"
}

cassandra_stop() {
  if cassandra_alive; then
    # SIGTERM runs Cassandra's shutdown hook; the data is disposable, so do
    # not wait long for it.
    stop_pid "$(cat "$CASSANDRA_PIDFILE")" 150 0.2
  fi
  wait_gone 50 0.2 cassandra_port_open
  cassandra_port_open && die "cassandra: $CASSANDRA_HOST:$CASSANDRA_CQL_PORT still open after stop (not started by this script?)"
  rm -f "$CASSANDRA_PIDFILE"
  say "cassandra stopped ($CASSANDRA_HOST:$CASSANDRA_CQL_PORT)"
}

cassandra_status() {
  cassandra_find_python
  if cassandra_cql_ready >/dev/null 2>&1; then
    say "cassandra: running on $CASSANDRA_HOST:$CASSANDRA_CQL_PORT"
  elif cassandra_alive; then
    say "cassandra: starting (pid $(cat "$CASSANDRA_PIDFILE"), not answering CQL yet)"
    return 1
  else
    say "cassandra: stopped ($CASSANDRA_HOST:$CASSANDRA_CQL_PORT)"
    return 1
  fi
}
