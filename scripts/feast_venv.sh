#!/usr/bin/env bash
# Creates Feast's own venv (the real `feast` package from PyPI, pinned) and prints its
# python, idempotently: a stamp file holding the requirement skips the work next time.
# Feast pins versions of grpcio, protobuf and redis that must not move the project's
# venv, so it never goes into .venv. Used by scripts/setup.sh dev (so `make test` has it
# before the tests start), by the Feast tests (tests/feast_env.py, when it is missing)
# and by the bench (bench/prereqs.py).
#
#   scripts/feast_venv.sh [--print-requirement]
#
# Environment:
#   FEAST_VENV=dir   where (default build/bench/feast-venv, the bench's)
#   PYTHON=python3   interpreter that creates the venv
set -euo pipefail
cd "$(dirname "$0")/.."

# The one place the Feast version is pinned (docs/feast.md says which was tested).
REQUIREMENT="feast[redis,grpcio]==0.67.0"
DIR="${FEAST_VENV:-build/bench/feast-venv}"
PYTHON="${PYTHON:-python3}"
# The bench wrote this stamp before this script existed: same name, same content.
STAMP="$DIR/.bench-requirement"

if [[ "${1:-}" == --print-requirement ]]; then
  echo "$REQUIREMENT"
  exit 0
fi

say() { printf 'feast-venv: %s\n' "$*" >&2; }

if [[ -x "$DIR/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$REQUIREMENT" ]]; then
  echo "$DIR/bin/python"
  exit 0
fi
started=$SECONDS
say "installing $REQUIREMENT into $DIR (once)"
if [[ ! -x "$DIR/bin/python" ]] || ! "$DIR/bin/python" -c 'import sys' >/dev/null 2>&1; then
  command -v "$PYTHON" >/dev/null 2>&1 || { say "ERROR: '$PYTHON' not found"; exit 1; }
  rm -rf "$DIR"
  mkdir -p "$(dirname "$DIR")"
  "$PYTHON" -m venv "$DIR"
fi
# Removed first, so an interrupted install is never taken for a finished one.
rm -f "$STAMP"
"$DIR/bin/python" -m pip install --quiet --disable-pip-version-check "$REQUIREMENT" >&2
echo "$REQUIREMENT" >"$STAMP"
say "installed in $((SECONDS - started)) s"
echo "$DIR/bin/python"
