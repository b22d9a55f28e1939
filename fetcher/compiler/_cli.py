"""The `fetcher compile` command: run `compile_repo`, print the report, pick the exit code.

Exit codes: 0 clean, 1 validation errors, 2 usage (a missing or empty repository folder).
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from fetcher.compiler._compile import CompileReport, UsageError, compile_repo
from fetcher.compiler._performance import Limits

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_USAGE = 2


def _human(report: CompileReport, out: TextIO, err: TextIO) -> None:
    for p in report.warnings:
        print(p.render(), file=err)
    for p in report.errors:
        print(p.render(), file=err)
    if report.errors:
        assert report.stopped_at is not None
        print(f"fetcher compile: {len(report.errors)} error(s) in stage "
              f"{report.stopped_at.label}; later stages did not run", file=err)
        return
    groups = [o for o in report.objects if o.kind == "group_by"]
    joins = [o for o in report.objects if o.kind == "join"]
    where = f"into {report.out}" if report.out else "(checked only: no --out)"
    against = f", evolution checked against {report.previous}" if report.previous else ""
    print(f"compiled {len(groups)} group-bys ({sum(bool(o.served) for o in groups)} served) and "
          f"{len(joins)} joins ({sum(bool(o.served) for o in joins)} served) {where}{against}",
          file=out)


def run_compile(repo: str, out: str | None, *, strict: bool = False, as_json: bool = False,
                against: str | None = None, force: bool = False, limits: Limits | None = None,
                stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Compile `repo` into `out` and report: the exit code of `fetcher compile`."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        report = compile_repo(repo, out, strict=strict, against=against, force=force,
                              limits=limits)
    except UsageError as exc:
        if as_json:
            print(json.dumps({"ok": False, "usage_error": str(exc)}, indent=2), file=stdout)
        print(f"fetcher compile: {exc}", file=stderr)
        return EXIT_USAGE
    if as_json:
        print(json.dumps(report.as_json(), indent=2), file=stdout)
    else:
        _human(report, stdout, stderr)
    return EXIT_OK if report.ok else EXIT_ERRORS
