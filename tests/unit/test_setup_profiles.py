"""scripts/setup.sh profiles and the Makefile targets that use them.

`make run` needs only the venv with the runtime dependencies (the `serve` profile);
every other target gets everything (`dev`). The script runs here against stub
commands (python, go, apt-get, sudo, redis-server) that only record how they were
called, in a temporary venv and tools folder: no network, nothing installed. The
browser dev needs (CHROMIUM) is a stub file too, present unless a test says otherwise,
and Feast's venv (scripts/feast_venv.sh) is made in the sandbox by the python3 stub.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "setup.sh"
GO_TOOL_COUNT = len(re.findall(r'^\s+"github\.com/\S+@v\S+ \S+"$', SETUP.read_text(), re.M))
PYPI_TOOL_COUNT = len(re.findall(r'^\s+"[\w.-]+==[\w.]+ \S+"$', SETUP.read_text(), re.M))

# Each stub appends "name args..." to $STUB_LOG. The python stub is the venv's
# interpreter and makes pip's --target folder; the go stub leaves the binary where
# `go install` would.
_STUBS = {
    "python": 'while (($#)); do [[ "$1" == --target ]] && mkdir -p "$2"; shift; done\n',
    "go": 'pkg="${2%@*}"; touch "$GOBIN/${pkg##*/}"; chmod +x "$GOBIN/${pkg##*/}"\n',
    "apt-get": "",
    "sudo": "",
    "redis-server": 'echo "Redis server v=7.0.15 sha=0"\n',
    "redis-cli": "",
    # `python3 -m venv DIR` (Feast's venv) leaves a copy of the venv's python stub there.
    "python3": 'if [[ "$1" == -m && "$2" == venv ]]; then mkdir -p "$3/bin"; '
    'cp "$VENV/bin/python" "$3/bin/python"; fi\n',
}
FEAST_REQUIREMENT = subprocess.run(
    ["bash", str(ROOT / "scripts" / "feast_venv.sh"), "--print-requirement"],
    capture_output=True, text=True, check=True, timeout=60,
).stdout.strip()


def _stub(path: Path, name: str, body: str) -> None:
    path.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >>"$STUB_LOG"\n{body}')
    path.chmod(0o755)


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "stubs").mkdir()
    _stub(tmp_path / "chromium", "chromium", "")
    for name, body in _STUBS.items():
        if name == "python":
            _stub(tmp_path / "venv" / "bin" / "python", name, body)
        else:
            _stub(tmp_path / "stubs" / name, name, body)
    return tmp_path


def run_setup(sandbox: Path, *args: str, **extra_env: str) -> list[str]:
    """Runs scripts/setup.sh ARGS against the stubs; returns the stub calls it made."""
    log = sandbox / "calls.log"
    log.write_text("")
    env = {
        "PATH": f"{sandbox / 'stubs'}:{os.environ['PATH']}",
        "HOME": str(sandbox),
        "STUB_LOG": str(log),
        "VENV": str(sandbox / "venv"),
        "TOOLS_DIR": str(sandbox / "tools"),
        "CHROMIUM": str(sandbox / "chromium"),
        "FEAST_VENV": str(sandbox / "feast-venv"),
        **extra_env,
    }
    subprocess.run(["bash", str(SETUP), *args], env=env, check=True, capture_output=True,
                   timeout=60)
    return [line for line in log.read_text().splitlines() if line != "python -c import sys"]


def pip_targets(calls: list[str]) -> list[str]:
    """The targets of the `pip install -e TARGET` calls (the venv installs), in order."""
    installs = [c for c in calls if c.startswith("python -m pip install") and " -e " in c]
    return [c.rsplit(" -e ", 1)[1] for c in installs]


def stamp(sandbox: Path) -> str:
    """The venv's install stamp: "<sha256 of pyproject.toml> <profile>"."""
    return (sandbox / "venv" / ".pyproject.sha256").read_text().strip()


def pyproject_sha() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def test_the_tool_lists_were_read() -> None:
    assert GO_TOOL_COUNT == 5
    assert PYPI_TOOL_COUNT == 2


def test_serve_installs_the_runtime_dependencies_only(sandbox: Path) -> None:
    calls = run_setup(sandbox, "serve")
    assert calls == [c for c in calls if c.startswith("python ")], (
        f"serve must call no Go, apt or redis tool: {calls}"
    )
    assert pip_targets(calls) == ["."]
    assert len(calls) == 1, calls
    assert not (sandbox / "tools").exists()
    assert stamp(sandbox) == f"{pyproject_sha()} serve"
    assert run_setup(sandbox, "serve") == [], "a second serve run must install nothing"


def test_dev_after_serve_installs_the_dev_extras_and_the_tools(sandbox: Path) -> None:
    run_setup(sandbox, "serve")
    calls = run_setup(sandbox, "dev")
    assert pip_targets(calls) == [".[dev]"]
    assert sum(c.startswith("go install ") for c in calls) == GO_TOOL_COUNT
    assert sum("--target" in c for c in calls) == PYPI_TOOL_COUNT
    assert not any(c.startswith(("apt-get", "sudo")) for c in calls), "redis-server is present"
    assert stamp(sandbox) == f"{pyproject_sha()} dev"
    assert run_setup(sandbox, "dev") == ["redis-server --version"], "dev again: nothing to do"


def test_no_argument_is_dev(sandbox: Path) -> None:
    calls = run_setup(sandbox)
    assert pip_targets(calls) == [".[dev]"]
    assert sum(c.startswith("go install ") for c in calls) == GO_TOOL_COUNT


def test_a_dev_venv_satisfies_serve(sandbox: Path) -> None:
    run_setup(sandbox, "dev")
    assert run_setup(sandbox, "serve") == []
    assert stamp(sandbox) == f"{pyproject_sha()} dev", "serve must not downgrade the stamp"


def test_a_stamp_from_before_profiles_is_a_dev_install(sandbox: Path) -> None:
    (sandbox / "venv" / ".pyproject.sha256").write_text(pyproject_sha() + "\n")
    assert run_setup(sandbox, "serve") == []


def test_a_changed_pyproject_reinstalls_the_profile_asked_for(sandbox: Path) -> None:
    (sandbox / "venv" / ".pyproject.sha256").write_text("0" * 64 + " dev\n")
    assert pip_targets(run_setup(sandbox, "serve")) == ["."]
    assert stamp(sandbox) == f"{pyproject_sha()} serve"
    assert pip_targets(run_setup(sandbox, "dev")) == [".[dev]"]


def test_an_unknown_profile_is_refused(sandbox: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        run_setup(sandbox, "server")
    assert failed.value.returncode == 2
    assert b"usage:" in failed.value.stderr


def test_dev_installs_chromium_with_apt_when_it_is_missing(sandbox: Path) -> None:
    # As a non-root user (an `id` stub), every apt step goes through the sudo stub, which
    # only records it: nothing on this machine is touched.
    _stub(sandbox / "stubs" / "id", "id", "echo 1000\n")
    missing = str(sandbox / "no-chromium")
    calls = run_setup(sandbox, "dev", CHROMIUM=missing)
    installs = [c for c in calls if c.startswith("sudo apt-get install")]
    assert installs == ["sudo apt-get install -y -qq --no-install-recommends chromium"], calls
    assert "sudo apt-get update -qq" in calls
    assert not any("chromium" in c for c in run_setup(sandbox, "serve", CHROMIUM=missing))


def test_dev_with_skip_apt_and_no_chromium_says_so(sandbox: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        run_setup(sandbox, "dev", CHROMIUM=str(sandbox / "no-chromium"), SKIP_APT="1")
    assert b"chromium missing" in failed.value.stderr and b"SKIP_APT=1" in failed.value.stderr
    calls = (sandbox / "calls.log").read_text()
    assert "apt-get" not in calls


def _feast_calls(calls: list[str]) -> list[str]:
    return [c for c in calls if "feast-venv" in c or FEAST_REQUIREMENT in c]


def _java_stub(sandbox: Path, version: str) -> Path:
    java = sandbox / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True, exist_ok=True)
    _stub(java, "java", f'echo \'openjdk version "{version}" 2025-04-15\' >&2\n')
    return java


def test_dev_installs_java_17_with_apt_when_it_is_missing(sandbox: Path) -> None:
    calls = run_setup(sandbox, "dev", JAVA=str(sandbox / "no-java"))
    assert any(c.startswith("apt-get install") and "openjdk-17-jre-headless" in c
               for c in calls), calls
    java = _java_stub(sandbox, "17.0.15")
    calls = run_setup(sandbox, "dev", JAVA=str(java))
    assert not any("openjdk" in c for c in calls), calls


def test_dev_refuses_a_java_older_than_17(sandbox: Path) -> None:
    java = _java_stub(sandbox, "11.0.2")
    with pytest.raises(subprocess.CalledProcessError) as info:
        run_setup(sandbox, "dev", JAVA=str(java))
    assert b"needs 17 or later" in info.value.stderr


def test_dev_makes_feasts_venv_once(sandbox: Path) -> None:
    calls = run_setup(sandbox, "dev")
    feast = sandbox / "feast-venv"
    assert f"python3 -m venv {feast}" in calls
    install = f"python -m pip install --quiet --disable-pip-version-check {FEAST_REQUIREMENT}"
    assert calls.count(install) == 1, calls
    assert (feast / ".bench-requirement").read_text().strip() == FEAST_REQUIREMENT
    assert not _feast_calls(run_setup(sandbox, "dev")), "installed once"
    assert not _feast_calls(run_setup(sandbox, "serve"))


def test_skip_feast(sandbox: Path) -> None:
    calls = run_setup(sandbox, "dev", SKIP_FEAST="1")
    assert not _feast_calls(calls) and not (sandbox / "feast-venv").exists()


def make_dry_run(target: str) -> str:
    """The commands `make TARGET` would run, its prerequisites' included."""
    make = shutil.which("make")
    assert make, "make not found: install Debian's make"
    return subprocess.run(
        [make, "-n", "-s", "--no-print-directory", target], cwd=ROOT, check=True,
        capture_output=True, text=True, timeout=60,
    ).stdout


def test_make_run_sets_up_for_serving_only() -> None:
    commands = make_dry_run("run")
    setups = re.findall(r"scripts/setup\.sh\b.*", commands)
    assert setups == ["scripts/setup.sh serve"], commands
    assert "services.sh" not in commands and ".tools" not in commands


@pytest.mark.parametrize("target", ["setup", "test", "lint", "bench", "proto", "soak", "services"])
def test_other_targets_set_up_everything(target: str) -> None:
    commands = make_dry_run(target)
    setups = re.findall(r"scripts/setup\.sh\b.*", commands)
    assert setups == ["scripts/setup.sh dev"], commands
