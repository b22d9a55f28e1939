#!/usr/bin/env bash
# Regenerates the Python code of every .proto under protos/ (committed; a test checks it
# is current): fetcher/v1 (our API) and fetcher/feast/proto (Feast's messages, written
# for the fetcher: docs/feast.md). OUT=dir writes the code there instead of the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT="${OUT:-.}"
mapfile -t PROTOS < <(cd protos && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
"$PY" -m grpc_tools.protoc -Iprotos \
  --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" \
  "${PROTOS[@]/#/protos/}"
# Every folder of generated code is a package; gRPC stubs only where a file has a service.
for proto in "${PROTOS[@]}"; do
  dir="$(dirname "$proto")"
  stub="$OUT/${proto%.proto}_pb2_grpc.py"
  if ! grep -q '^service ' "protos/$proto"; then rm -f "$stub"; fi
  while [[ "$dir" != . && "$dir" != fetcher ]]; do
    touch "$OUT/$dir/__init__.py"
    dir="$(dirname "$dir")"
  done
done
