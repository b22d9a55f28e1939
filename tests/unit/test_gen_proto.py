"""The committed generated code (fetcher/v1, fetcher/feast/proto) matches what protos/
generates now: scripts/gen_proto.sh is run into a temp dir and every file compared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The folders of generated code; every file under them is generated.
GENERATED_DIRS = ("fetcher/v1", "fetcher/feast/proto")


def _generated_files(root: Path) -> list[str]:
    return sorted(
        path.relative_to(root).as_posix()
        for folder in GENERATED_DIRS
        for path in (root / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs scripts/gen_proto.sh with OUT=<temp dir>."""
    out = tmp_path_factory.mktemp("gen_proto")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_proto.sh")],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable, "OUT": str(out)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"scripts/gen_proto.sh failed:\n{proc.stdout}{proc.stderr}"
    return out


def test_the_same_files_are_generated(regenerated: Path) -> None:
    assert _generated_files(regenerated) == _generated_files(ROOT), (
        "generated files differ from the committed ones: run `make proto` "
        "(scripts/gen_proto.sh) and commit the result"
    )


@pytest.mark.parametrize("rel", _generated_files(ROOT))
def test_generated_code_is_current(regenerated: Path, rel: str) -> None:
    fresh = (regenerated / rel).read_bytes()
    committed = (ROOT / rel).read_bytes()
    assert committed == fresh, (
        f"{rel} is stale (a .proto under protos/ or grpcio-tools changed): "
        "run `make proto` (scripts/gen_proto.sh) and commit the result"
    )
