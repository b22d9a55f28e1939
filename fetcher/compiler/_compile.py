"""`compile_repo`: discovery, the validation stages in order, the output and its final check.

Stage 4 compares with the previous output: `against`, else `out` when it holds a compiled
catalog (its manifest), else nothing (a first compile).

A stage with errors stops the compile after reporting every error of that stage; nothing
is written unless every stage is clean. The written catalog is loaded back with
`fetcher.catalog.load_catalog`: a failure there is a compiler bug, and is reported as one.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fetcher.catalog import CatalogError, load_catalog
from fetcher.compiler._compiled import CompiledOutput, CompiledReadError, is_compiled, read_compiled
from fetcher.compiler._consistency import check_consistency
from fetcher.compiler._dependencies import check_dependencies
from fetcher.compiler._discover import FOLDERS, Discovery, discover
from fetcher.compiler._emit import build_output
from fetcher.compiler._evolution import check_evolution
from fetcher.compiler._model import GroupModel, JoinModel
from fetcher.compiler._performance import Limits, check_performance
from fetcher.compiler._problems import Problem, Stage
from fetcher.compiler._refs import References
from fetcher.compiler._schema import check_schema
from fetcher.compiler._versions import assign_versions, schema_changes

OUTPUT_DIRS = ("groups", "services", "metadata")


class UsageError(Exception):
    """The compile cannot start: the repository folder is missing or holds no definitions."""


@dataclass(frozen=True, slots=True)
class CompiledObject:
    """One collected definition as the report lists it."""

    kind: str
    name: str
    file: str
    line: int
    served: bool | None  # None: the compile stopped before the output
    version: str | None = None  # as the manifest records it; None: stopped before stage 5


@dataclass(frozen=True, slots=True)
class CompileReport:
    """What a compile found and did."""

    repo: str
    out: str | None
    objects: tuple[CompiledObject, ...]
    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    stopped_at: Stage | None  # the stage whose errors stopped the compile
    compile_s: float
    validation_s: float
    previous: str | None = None  # the compiled output stage 4 compared with
    performance: dict[str, Any] | None = None  # stage 5's numbers; None: it did not run
    # metadata/lineage.json and dependencies.json as built (not in --json; the --report page
    # draws them); None: the compile stopped before the output was built (stages 0-3)
    lineage: dict[str, Any] | None = None
    graph: dict[str, Any] | None = None
    # Per object that differs from the previous output: status, bump, reason, versions;
    # None: no previous output, or the compile stopped before stage 4.
    schema_changes: tuple[dict[str, Any], ...] | None = None

    @property
    def ok(self) -> bool:
        """True when there are no errors (and the output was written)."""
        return not self.errors

    def as_json(self) -> dict[str, Any]:
        """The report as `fetcher compile --json` prints it."""
        counts = {stage.label: 0 for stage in Stage}
        for p in self.errors:
            counts[p.stage.label] += 1
        return {
            "ok": self.ok,
            "repo": self.repo,
            "out": self.out,
            "objects": [dataclasses.asdict(o) for o in self.objects],
            "errors": [p.as_json() for p in self.errors],
            "warnings": [p.as_json() for p in self.warnings],
            "error_counts": counts,
            "stopped_at": self.stopped_at.label if self.stopped_at is not None else None,
            "previous": self.previous,
            "performance": self.performance,
            "schema_changes": (list(self.schema_changes)
                               if self.schema_changes is not None else None),
            "compile_seconds": round(self.compile_s, 6),
            "validation_seconds": round(self.validation_s, 6),
        }


def compiler_version() -> str:
    """The version the manifest records: the installed fetcher's."""
    try:
        return importlib.metadata.version("feature-fetcher")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def write_output(out: Path, files: dict[str, bytes]) -> None:
    """Make out/{groups,services,metadata} hold exactly `files` (other files left alone).

    A server watching `out` (watch_config) may load it between any two steps, so each file is
    renamed into place whole, in an order where every state in between is refused by the
    catalog loader or reads every row the previous catalog could: kept schemas, group files,
    current schemas, services, metadata; the files no longer produced are removed last.
    """
    (out / "groups").mkdir(parents=True, exist_ok=True)  # the catalog may have no group
    current = {f"groups/{schema}" for rel, data in files.items()
               if rel.startswith("groups/") and rel.endswith(".json")
               and (schema := json.loads(data).get("schema")) is not None}  # aggregation: none
    for rel in sorted(files, key=lambda r: (_write_rank(r, current), r)):
        path, data = out / rel, files[rel]
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != data:
            _replace(path, data)
    for sub in OUTPUT_DIRS:
        folder = out / sub
        if folder.is_dir():
            for old in sorted(folder.iterdir()):
                rel = f"{sub}/{old.name}"
                if old.is_file() and old.suffix in (".json", ".avsc") and rel not in files:
                    old.unlink()


def _write_rank(rel: str, current: set[str]) -> int:
    # Kept schemas first (nothing reads them until a group file lists them), then the group
    # files (which list them), the current schemas, the services (which may name new groups).
    if rel.startswith("groups/"):
        return 1 if rel.endswith(".json") else 2 if rel in current else 0
    return 3 if rel.startswith("services/") else 4


def _replace(path: Path, data: bytes) -> None:
    # The temporary name's suffix is one the catalog loader does not read.
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        scratch.write_bytes(data)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def _check_catalog(out: Path) -> list[Problem]:
    try:
        load_catalog(out)
    except CatalogError as exc:
        return [Problem(Stage.OUTPUT, str(out), 0, "", "", f"compiler bug: the compiled catalog "
                        f"does not load: {problem}", "report it with the definitions that "
                        "produced it") for problem in exc.problems]
    return []


class _Run:
    """The problems of the stages run so far, split into errors and warnings."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.stopped_at: Stage | None = None

    def stage(self, stage: Stage, problems: Sequence[Problem]) -> bool:
        """Record one stage's problems; True when it has errors (the compile stops)."""
        for p in problems:
            if not p.warning:
                self.errors.append(p)
            elif self.strict:
                self.errors.append(dataclasses.replace(p, warning=False))
            else:
                self.warnings.append(p)
        if self.errors:
            self.stopped_at = stage
        return bool(self.errors)


def _previous(against: str | Path | None, out: str | Path | None) -> CompiledOutput | None:
    """The output stage 4 compares with: `against`, else `out` if it is a compiled output."""
    folder = Path(against) if against is not None else Path(out) if out is not None else None
    if folder is None or (against is None and not is_compiled(folder)):
        return None
    if not folder.is_dir():
        raise UsageError(f"--against {against}: no such folder. Fix: give the folder a "
                         "previous `fetcher compile --out` wrote")
    try:
        return read_compiled(folder)
    except CompiledReadError as exc:
        raise UsageError(str(exc)) from None


def compile_repo(repo: str | Path, out: str | Path | None = None, *, strict: bool = False,
                 against: str | Path | None = None, force: bool = False,
                 limits: Limits | None = None,
                 reader: Callable[[Path], Discovery] = discover) -> CompileReport:
    """Compile the definitions of `repo` into `out` (None: check only, write nothing).

    `reader` collects the definitions (default: import the Python files; Chronon's configs
    have their own, `compile_chronon`).

    `against`: the previous output to check evolution against (default: `out`'s contents);
    `force`: accept a change of an online production object without a version bump.
    """
    started = time.perf_counter()
    root = Path(repo)
    if not root.is_dir():
        raise UsageError(f"{repo}: no such folder. Fix: give the definition repository's folder")
    if not any((root / folder).is_dir() for folder in FOLDERS):
        raise UsageError(f"{repo}: has no {' or '.join(f'{f}/' for f in FOLDERS)} folder. "
                         "Fix: run it on a definition repository (docs/compiler.md)")
    previous = _previous(against, out)
    root = root.resolve()
    run = _Run(strict)
    found = reader(root)
    definitions = found.definitions
    served: dict[str, bool] = {}
    versions: dict[str, str] = {}
    performance: dict[str, Any] | None = None
    metadata: tuple[dict[str, Any], dict[str, Any]] | None = None  # lineage, graph
    changes: tuple[dict[str, Any], ...] | None = None
    validation_s = 0.0

    def report() -> CompileReport:
        objects = tuple(
            CompiledObject(d.kind, d.name, d.file, d.line, served.get(f"{d.kind}:{d.name}"),
                           versions.get(f"{d.kind}:{d.name}"))
            for d in definitions
        )
        return CompileReport(str(repo), str(out) if out is not None else None, objects,
                             tuple(run.errors), tuple(run.warnings), run.stopped_at,
                             time.perf_counter() - started, validation_s,
                             previous.folder if previous is not None else None, performance,
                             lineage=metadata[0] if metadata else None,
                             graph=metadata[1] if metadata else None,
                             schema_changes=changes)

    if run.stage(Stage.DISCOVERY, found.problems):
        return report()
    refs = References(definitions)
    t0 = time.perf_counter()
    schema = check_schema(root, definitions, refs)
    stopped = run.stage(Stage.SCHEMA, schema.problems)
    if not stopped:
        stopped = run.stage(Stage.CONSISTENCY,
                            check_consistency(schema.groups, schema.joins, refs))
    edges: list[Any] = []
    if not stopped:
        edges, problems = check_dependencies(definitions, refs)
        stopped = run.stage(Stage.DEPENDENCIES, [*problems, *schema.later])
    if stopped:
        validation_s = time.perf_counter() - t0
        return report()
    evolution = check_evolution(root, schema.groups, previous)
    output = build_output(schema.groups, schema.joins, refs, edges, compiler_version(),
                          evolution.previous_files)
    metadata = (output.lineage, output.graph)
    models: list[GroupModel | JoinModel] = [*schema.groups.values(), *schema.joins.values()]
    by_key = {f"{m.definition.kind}:{m.name}": m.definition for m in models}
    assigned, problems = assign_versions(output.entries, by_key, previous, force=force)
    if previous is not None:
        changes = schema_changes(previous.objects, output.entries, assigned)
    broken = {p.definition for p in evolution.problems if not p.warning}
    problems = [*evolution.problems, *(p for p in problems if p.definition not in broken)]
    if run.stage(Stage.EVOLUTION, problems):
        validation_s = time.perf_counter() - t0
        return report()
    perf = check_performance(schema.groups, schema.joins, refs, limits or Limits())
    performance = perf.numbers
    stopped = run.stage(Stage.PERFORMANCE, perf.problems)
    validation_s = time.perf_counter() - t0
    if stopped:
        return report()
    served, versions = output.served, assigned
    _write_and_check(out, output.with_manifest(assigned),
                     lambda problems: run.stage(Stage.OUTPUT, problems))
    return report()


def _write_and_check(out: str | Path | None, files: dict[str, bytes],
                     record: Callable[[list[Problem]], bool]) -> None:
    if out is not None:
        write_output(Path(out), files)
        record(_check_catalog(Path(out)))
        return
    scratch = Path(tempfile.mkdtemp(prefix="fetcher-compile-"))
    try:
        write_output(scratch, files)
        record(_check_catalog(scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
