"""Helpers for the e2e tests of compiled catalogs: `fetcher compile` and `fetcher load` run as
subprocesses of this checkout's code, the bytes of a compiled tree, and the oracle of a
served value (the row that was written)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fetcher.client import FeatureValue
from fetcher.types import FeatureType, Status
from tests.e2e.conftest import FETCHER_MODULE, REPO, fetcher_env, run_fetcher

CLI_TIMEOUT_S = 120.0


def run_cli(*args: str, timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run this checkout's `fetcher` CLI from the repo root; output captured as text."""
    return run_fetcher(*args, timeout_s=timeout_s, command=FETCHER_MODULE)


def compile_cli(repo: Path, out: Path) -> None:
    """`fetcher compile REPO --out OUT`, which must succeed."""
    result = run_cli("compile", str(repo), "--out", str(out))
    assert result.returncode == 0, f"fetcher compile {repo}:\n{result.stdout}{result.stderr}"


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path -> its bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """One JSON object a line (`fetcher load`'s JSONL input)."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def load_cli(settings: Path, files: Mapping[str, tuple[Path, int]]) -> None:
    """`fetcher load` each group's file (group -> (file, rows in it)), all processes at once;
    every row written, none rejected."""
    loads = {
        group: (subprocess.Popen(
            [*FETCHER_MODULE, "load", "--settings", str(settings), "--group", group, str(path)],
            cwd=REPO, env=fetcher_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        ), rows)
        for group, (path, rows) in sorted(files.items())
    }
    for group, (process, rows) in loads.items():
        stdout, stderr = process.communicate(timeout=CLI_TIMEOUT_S)
        assert process.returncode == 0, f"fetcher load {group}:\n{stdout}{stderr}"
        written = sum(int(n.replace(",", "")) for n in re.findall(r"([\d,]+) written", stderr))
        assert written == rows, f"fetcher load {group}:\n{stdout}{stderr}"
        assert re.findall(r"([\d,]+) rejected", stderr) == ["0"], stderr


def check_present(got: FeatureValue, expected: Any, event_ms: int, ftype: FeatureType) -> None:
    """`got` is the written `expected` (None: NULL_VALUE) of a row written at `event_ms`."""
    where = f"{got.group}: {got.name}"
    assert got.type is ftype, f"{where}: type {got.type!r}, expected {ftype!r}"
    if expected is None:
        assert got.status is Status.NULL_VALUE, f"{where}: {got.status!r}, expected NULL_VALUE"
    else:
        assert got.status is Status.PRESENT, f"{where}: {got.status!r}, expected PRESENT"
        assert got.value == expected, f"{where}: {got.value!r}, expected {expected!r}"
        assert type(got.value) is type(expected), f"{where}: {got.value!r} vs {expected!r}"
    assert got.event_ms == event_ms, f"{where}: event time {got.event_ms}, expected {event_ms}"


def check_not_found(got: FeatureValue, ftype: FeatureType) -> None:
    """`got` is of an entity no row was written for."""
    assert got.type is ftype, f"{got.group}: {got.name}: type {got.type!r}, expected {ftype!r}"
    assert got.status is Status.NOT_FOUND, f"{got.group}: {got.name}: {got.status!r}"
