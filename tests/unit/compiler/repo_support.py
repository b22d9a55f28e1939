"""Small definition repositories written into tmp_path, compiled, and their problems read."""

from __future__ import annotations

import textwrap
from pathlib import Path

from fetcher.compiler import CompileReport, Problem, Stage, compile_repo

HEADER = "from fetcher.definitions import *  # noqa: F403\n\n"

# A valid online group-by and join: the passing neighbour every failing case starts from.
USERS = """
user_profile = GroupBy(
    keys=["user_id"],
    sources=[EventSource(
        table="events.users",
        query=Query(selects=["user_id", "age", "country"], time_column="ts"),
        columns={"user_id": "int64", "age": "int64", "country": "string"},
    )],
    online=True,
)
"""
JOIN = """
from group_bys.risk.users import user_profile

scoring = Join(
    left={"user_id": "int64"},
    right_parts=[JoinPart(user_profile, prefix="user_")],
    online=True,
)
"""


def write_repo(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (relative path -> Python source, dedented, definitions imported)."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        body = textwrap.dedent(text).lstrip("\n")
        path.write_text((HEADER + body) if rel.endswith(".py") else body, encoding="utf-8")
    return root


def line_of(root: Path, rel: str, start: str) -> int:
    """The 1-based line of `rel` that starts with `start`."""
    lines = (root / rel).read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(start))


def compile_files(tmp_path: Path, files: dict[str, str], *, strict: bool = False,
                  out: bool = True) -> CompileReport:
    """Compile a repository of `files` (into tmp_path/out when `out`)."""
    repo = write_repo(tmp_path / "repo", files)
    return compile_repo(repo, tmp_path / "out" if out else None, strict=strict)


def one_error(report: CompileReport, stage: Stage) -> Problem:
    """The only error of the report, which must be of `stage`."""
    assert [p.render() for p in report.errors][:1] and len(report.errors) == 1, [
        p.render() for p in report.errors
    ]
    problem = report.errors[0]
    assert problem.stage is stage, problem.render()
    return problem
