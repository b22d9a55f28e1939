#!/usr/bin/env bash
# Regenerates the Python gRPC code under fetcher/v1 from protos/ (committed; a test checks it is current).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -m grpc_tools.protoc -Iprotos \
  --python_out=. --pyi_out=. --grpc_python_out=. \
  protos/fetcher/v1/feature_service.proto
touch fetcher/v1/__init__.py
