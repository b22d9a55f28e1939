"""The real Feast package for the tests, in its own venv (scripts/feast_venv.sh makes it).

`scripts/setup.sh dev` (so `make test`) installs it before the tests start; on a machine
where it is missing the first Feast test installs it through the same script (about a
minute with an empty pip cache). Feast's own processes (`feast apply`, `feast materialize`
and tests/integration/feast_side.py) run in that venv, never in the project's: its pins of
grpcio, protobuf and redis would move ours.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FEAST_VENV = ROOT / "build" / "bench" / "feast-venv"
SIDE_SCRIPT = ROOT / "tests" / "integration" / "feast_side.py"
# A fresh install downloads ~150 MB of wheels; a Feast command on a busy machine takes
# seconds to import pandas and Feast.
INSTALL_TIMEOUT_S = 1800
COMMAND_TIMEOUT_S = 300


@functools.cache
def feast_python() -> Path:
    """Python of Feast's venv, installed first when missing (idempotent, once per process)."""
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "feast_venv.sh")],
        env={**os.environ, "FEAST_VENV": str(FEAST_VENV), "PYTHON": sys._base_executable},
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/feast_venv.sh failed:\n{proc.stdout}{proc.stderr}")
    if proc.stderr.strip():  # it installed: say how long that took
        print(f"\n{proc.stderr.strip()} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return Path(proc.stdout.strip().splitlines()[-1])


def feast_env() -> dict[str, str]:
    """The environment of a Feast process: the venv's bin first on PATH, no usage stats."""
    bin_dir = str(feast_python().parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "FEAST_USAGE": "False",
        "PYTHONPATH": "",
    }


def run_feast(args: Sequence[str], cwd: Path) -> str:
    """Run the `feast` CLI of the venv in a repo; its output, or AssertionError with it."""
    feast = feast_python().parent / "feast"
    proc = subprocess.run(
        [str(feast), *args],
        cwd=cwd,
        env=feast_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, f"feast {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def run_side(repo: Path, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Run tests/integration/feast_side.py's steps in Feast's venv; its JSON answer."""
    plan = repo / "feast_side_steps.json"
    plan.write_text(json.dumps({"repo": str(repo), "steps": steps}))
    out = repo / "feast_side_out.json"
    proc = subprocess.run(
        [str(feast_python()), str(SIDE_SCRIPT), str(plan), str(out)],
        cwd=repo,
        env=feast_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, f"feast_side.py failed:\n{proc.stdout}{proc.stderr}"
    answer: dict[str, Any] = json.loads(out.read_text())
    return answer
