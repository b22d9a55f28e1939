"""The `fetcher compile` command: run `compile_repo`, print the report, pick the exit code.

Exit codes: 0 clean, 1 validation errors, 2 usage (a missing or empty repository folder,
bad options, an unreadable --types file).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TextIO

from fetcher.compiler._compile import CompileReport, UsageError, compile_repo
from fetcher.compiler._performance import Limits
from fetcher.compiler._report import write_report

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
                report: str | None = None,
                stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Compile `repo` into `out` and report (`report`: also as an HTML page there): the exit
    code of `fetcher compile`."""
    return _run(lambda: compile_repo(repo, out, strict=strict, against=against, force=force,
                                     limits=limits),
                as_json, report, stdout or sys.stdout, stderr or sys.stderr)


def run_chronon_compile(chronon_dir: str | None, types: str | None, out: str | None, *,
                        repo: str | None = None, strict: bool = False, as_json: bool = False,
                        against: str | None = None, force: bool = False,
                        limits: Limits | None = None, report: str | None = None,
                        stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """`fetcher compile --from-chronon DIR --types FILE`: its exit code (2 for bad usage)."""
    from fetcher.compiler._chronon import compile_chronon

    def build() -> CompileReport:
        if repo is not None:
            raise UsageError(f"give either REPO ({repo}) or --from-chronon, not both. Fix: "
                             "drop REPO to compile Chronon's configs")
        if chronon_dir is None:
            raise UsageError("--types is for --from-chronon. Fix: add --from-chronon DIR, or "
                             "drop --types (Python definitions declare their column types)")
        if types is None:
            raise UsageError("--from-chronon needs --types FILE: Chronon configs carry no "
                             "column types. Fix: write a types file (docs/compiler.md)")
        return compile_chronon(chronon_dir, types, out, strict=strict, against=against,
                               force=force, limits=limits)

    return _run(build, as_json, report, stdout or sys.stdout, stderr or sys.stderr)


def _run(build: Callable[[], CompileReport], as_json: bool, page: str | None, stdout: TextIO,
         stderr: TextIO) -> int:
    try:
        report = build()
    except UsageError as exc:
        if as_json:
            print(json.dumps({"ok": False, "usage_error": str(exc)}, indent=2), file=stdout)
        print(f"fetcher compile: {exc}", file=stderr)
        return EXIT_USAGE
    if as_json:
        print(json.dumps(report.as_json(), indent=2), file=stdout)
    else:
        _human(report, stdout, stderr)
    if page is not None:  # written whatever the outcome: the errors are the most useful part
        try:
            write_report(report, page)
        except OSError as exc:
            print(f"fetcher compile: --report {page}: cannot write it: {exc}. Fix: give a "
                  "file in a writable folder", file=stderr)
            return EXIT_USAGE
    return EXIT_OK if report.ok else EXIT_ERRORS
