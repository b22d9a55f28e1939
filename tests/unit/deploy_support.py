"""Shared pieces of the deployment tests: paths, the pinned tools, a small Dockerfile reader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_SETTINGS = ROOT / "deploy" / "settings.toml"
TOOLS = ROOT / ".tools"
SETUP = "run `bash scripts/setup.sh` (it installs kubeconform, hadolint and the schemas)"


def tool(name: str) -> Path:
    """A tool scripts/setup.sh installs into .tools/bin; fails (never skips) when missing."""
    path = TOOLS / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: {SETUP}")
    return path


def _logical_lines(text: str) -> Iterator[str]:
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""


def stages() -> list[list[str]]:
    """The Dockerfile's logical lines per stage; [0] holds the ARGs before the first FROM."""
    found: list[list[str]] = [[]]
    for line in _logical_lines(DOCKERFILE.read_text()):
        if line.upper().startswith("FROM "):
            found.append([])
        found[-1].append(line)
    return found


def instructions(lines: list[str]) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each logical line."""
    return [(op.upper(), rest.strip()) for op, _, rest in (ln.partition(" ") for ln in lines)]


def arg_default(name: str) -> str:
    """The default of a Dockerfile ARG."""
    for stage in stages():
        for op, arg in instructions(stage):
            if op == "ARG" and arg.startswith(f"{name}="):
                return arg.split("=", 1)[1]
    raise AssertionError(f"Dockerfile: no ARG {name}=default")


def dockerfile_uid() -> int:
    """The numeric uid the runtime stage runs as."""
    users = [arg for op, arg in instructions(stages()[-1]) if op == "USER"]
    assert users, "Dockerfile: the runtime stage has no USER"
    uid = users[-1].split(":")[0].replace("${FETCHER_UID}", arg_default("FETCHER_UID"))
    # Kubernetes' runAsNonRoot can only verify a numeric user.
    assert uid.isdigit(), f"Dockerfile: USER {users[-1]!r}: use a numeric uid"
    return int(uid)
