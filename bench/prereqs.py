"""Tools the bench needs, installed on first use and reused afterwards (idempotent).

- ghz: scripts/setup.sh installs it (pinned, Go module proxy) into .tools/bin.
- wrk: Debian's package, apt-get installed when missing (full bench only).
- Feast: its own venv (build/bench/feast-venv): Feast pins versions of grpcio,
  protobuf and redis that must not move the project's venv. scripts/feast_venv.sh makes
  it (and pins the version), for the bench as for the Feast tests.
- py-spy: a tools venv (build/bench/tools-venv); it profiles any process by pid, so
  it never needs to be importable by the fetcher.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.procs import BenchError, run

ROOT = Path(__file__).resolve().parent.parent
PY_SPY_REQUIREMENT = "py-spy==0.4.3"


def ghz_path() -> Path:
    """.tools/bin/ghz, or BenchError telling how to install it."""
    path = ROOT / ".tools" / "bin" / "ghz"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise BenchError(f"{path} missing: run `make setup` (scripts/setup.sh installs ghz)")
    return path


def ensure_wrk() -> str:
    """The wrk binary, installed with apt-get when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print("bench: installing wrk (apt-get)", flush=True)
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run([*sudo, "apt-get", "update", "-qq"], "apt-get update", env=env)
    run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
        "apt-get install wrk",
        env=env,
    )
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk still not on PATH after apt-get install wrk")
    return found


def _venv_with(venv: Path, requirement: str, what: str) -> Path:
    """`venv`'s python with `requirement` installed; a stamp file skips the work next time."""
    python = venv / "bin" / "python"
    stamp = venv / ".bench-requirement"
    if python.exists() and stamp.exists() and stamp.read_text() == requirement:
        return python
    print(f"bench: installing {requirement} into {venv} (once)", flush=True)
    if not python.exists():
        # The interpreter that runs the bench, not the project venv's (a venv of a venv
        # would still be fine, but this keeps Feast's site-packages fully separate).
        base = getattr(sys, "_base_executable", sys.executable)
        run([base, "-m", "venv", str(venv)], f"create {what} venv")
    run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ],
        f"pip install {requirement}",
        timeout_s=1800,
    )
    stamp.write_text(requirement)
    return python


def ensure_feast(build: Path) -> Path:
    """Python of the Feast venv, with the pinned Feast installed (scripts/feast_venv.sh)."""
    venv = build / "feast-venv"
    if not (venv / "bin" / "python").exists():
        print(f"bench: installing Feast into {venv} (once)", flush=True)
    out = run(
        ["bash", str(ROOT / "scripts" / "feast_venv.sh")],
        "scripts/feast_venv.sh",
        env={"FEAST_VENV": str(venv), "PYTHON": getattr(sys, "_base_executable", sys.executable)},
        timeout_s=1800,
    )
    return Path(out.strip().splitlines()[-1])


def ensure_py_spy(build: Path) -> Path:
    """The py-spy binary of the tools venv."""
    python = _venv_with(build / "tools-venv", PY_SPY_REQUIREMENT, "py-spy")
    return python.parent / "py-spy"


def machine() -> dict[str, object]:
    """nproc, CPU model and kernel, for the report."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    kernel = subprocess.run(["uname", "-r"], capture_output=True, text=True, check=False)
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": kernel.stdout.strip(),
        "python": sys.version.split()[0],
    }
