"""The committed generated code under fetcher/v1 matches what protos/ generates now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO = "fetcher/v1/feature_service.proto"
GENERATED = [
    "fetcher/v1/feature_service_pb2.py",
    "fetcher/v1/feature_service_pb2.pyi",
    "fetcher/v1/feature_service_pb2_grpc.py",
]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs protoc exactly as scripts/gen_proto.sh does, into a temp dir."""
    out = tmp_path_factory.mktemp("gen_proto")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'protos'}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(ROOT / "protos" / PROTO),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"grpc_tools.protoc failed:\n{proc.stdout}{proc.stderr}"
    return out


@pytest.mark.parametrize("rel", GENERATED)
def test_generated_code_is_current(regenerated: Path, rel: str) -> None:
    fresh = (regenerated / rel).read_bytes()
    committed = (ROOT / rel).read_bytes()
    assert committed == fresh, (
        f"{rel} is stale (protos/{PROTO} or grpcio-tools changed): "
        "run `make proto` (scripts/gen_proto.sh) and commit the result"
    )
