#!/usr/bin/env bash
# Runs the integration, e2e and faults packages RUNS times back to back while LOADERS
# busy loops keep the CPUs occupied: the check that no test races a timer that a busy
# 2-core machine can miss. Needs the test services (`make services`).
#
#   scripts/stress_check.sh [RUNS=3] [LOADERS=2] [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
loaders="${2:-2}"
shift $(($# > 2 ? 2 : $#))
pids=()
cleanup() { ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null; return 0; }
trap cleanup EXIT
for _ in $(seq "$loaders"); do
  python3 -c 'while True: pass' &
  pids+=("$!")
done
export PATH="$PWD/.tools/bin:$PWD/.venv/bin:$PATH"
for run in $(seq "$runs"); do
  start=$SECONDS
  if ! .venv/bin/pytest -q -p no:cacheprovider tests/integration tests/e2e tests/faults "$@"; then
    printf 'stress_check: run %s of %s failed (%s busy loops)\n' "$run" "$runs" "$loaders" >&2
    exit 1
  fi
  printf 'stress_check: run %s of %s passed in %ss (%s busy loops)\n' \
    "$run" "$runs" $((SECONDS - start)) "$loaders"
done
