"""`fetcher compile --from-chronon DIR --types FILE`: Chronon's compiled configs as definitions.

DIR is Chronon's compiled output (`production/`): `group_bys/<team>/<file>` and
`joins/<team>/<file>`, thrift simple-JSON without an extension. Every file is mapped to
fetcher.definitions objects (docs/compiler.md, "Chronon configs as input") and handed to
the same stages and output as definitions written in Python: `read_chronon` returns the
Discovery that `_discover.discover` returns for a Python repository, each object's file
being its Chronon file (relative to DIR, line 1). What cannot be mapped is a discovery
problem naming the file, the object and the Chronon field path.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

from fetcher.compiler._chronon_objects import map_group_by, map_join
from fetcher.compiler._chronon_sources import ChrononFile
from fetcher.compiler._chronon_types import TableTypes, load_types
from fetcher.compiler._compile import CompileReport, UsageError, compile_repo
from fetcher.compiler._discover import FOLDERS, Definition, Discovery
from fetcher.compiler._performance import Limits
from fetcher.compiler._problems import Problem, Stage
from fetcher.definitions import GroupBy, Join
from fetcher.quoting import cut


def chronon_files(root: Path) -> list[Path]:
    """The config files under DIR/group_bys and DIR/joins, sorted (hidden files skipped)."""
    files: list[Path] = []
    for folder in FOLDERS:
        if (root / folder).is_dir():
            files.extend(p for p in (root / folder).rglob("*")
                         if p.is_file() and not p.name.startswith("."))
    return sorted(files)


class _Registry:
    """Every object the files hold, once: the top-level copy wins over embedded ones."""

    def __init__(self) -> None:
        self.found: dict[tuple[str, str], tuple[Definition, bool]] = {}
        self.problems: list[Problem] = []

    def register(self, ctx: ChrononFile, kind: str, name: str, obj: GroupBy | Join,
                 where: str) -> None:
        """Record `obj`; a different object of the same kind and name is a problem."""
        top = where == ""
        mine = Definition(kind, name, obj, ctx.file, 1, "")
        known = self.found.get((kind, name))
        if known is None:
            self.found[(kind, name)] = (mine, top)
            return
        other, other_top = known
        if top and other_top:
            self.problems.append(Problem(
                Stage.DISCOVERY, ctx.file, 1, name, "metaData.name", f"{kind} {name!r} is "
                f"also defined in {other.file}", "give each config a unique name"))
        elif other.obj != obj:
            fields = [f.name for f in dataclasses.fields(obj)
                      if getattr(obj, f.name) != getattr(other.obj, f.name)]
            field = where.rstrip(".")
            self.problems.append(Problem(
                Stage.DISCOVERY, ctx.file, 1, name, field, f"differs from the {kind} of the "
                f"same name in {other.file} ({', '.join(fields)}): fetcher serves one",
                "recompile both configs with Chronon so that the copies agree, or rename one"))
        elif top and not other_top:
            self.found[(kind, name)] = (mine, True)


def _read(path: Path, rel: str) -> Mapping[str, object] | Problem:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return Problem(Stage.DISCOVERY, rel, 1, "", "", cut(f"is not a Chronon config (thrift "
                       f"simple-JSON): {exc}"), "give Chronon's compiled output "
                       "(production/), or move other files out of group_bys/ and joins/")
    if not isinstance(data, Mapping):
        return Problem(Stage.DISCOVERY, rel, 1, "", "", "is not a JSON object",
                       "give Chronon's compiled output (production/)")
    return data


def read_chronon(root: Path, types: TableTypes) -> Discovery:
    """Map every Chronon config under `root` to definitions: a Discovery, as for Python."""
    registry = _Registry()
    problems: list[Problem] = []
    seen: set[tuple[str, str, str]] = set()  # an embedded copy repeats its problems
    for path in chronon_files(root):
        rel = path.relative_to(root).as_posix()
        data = _read(path, rel)
        if isinstance(data, Problem):
            problems.append(data)
            continue
        ctx = ChrononFile(rel, types, registry.register)
        if rel.startswith("joins/"):
            if "joinParts" not in data and "left" not in data:
                ctx.error("", "", "is not a Chronon Join (no left, no joinParts)",
                          "move group-bys to group_bys/")
            else:
                map_join(ctx, "", data)
        elif "keyColumns" not in data and "sources" not in data:
            ctx.error("", "", "is not a Chronon GroupBy (no keyColumns, no sources)",
                      "move joins to joins/")
        else:
            map_group_by(ctx, "", data)
        for p in ctx.problems:
            key = (p.definition, p.field, p.problem)
            if key not in seen:
                seen.add(key)
                problems.append(p)
    problems.extend(registry.problems)
    definitions = sorted((d for d, _ in registry.found.values()),
                         key=lambda d: (d.file, d.kind != "group_by", d.name))
    return Discovery(tuple(definitions), tuple(problems))


def compile_chronon(chronon_dir: str | Path, types: str, out: str | Path | None = None, *,
                    strict: bool = False, against: str | Path | None = None,
                    force: bool = False, limits: Limits | None = None) -> CompileReport:
    """Compile Chronon's configs under `chronon_dir`, typed by `types`, into `out`."""
    root = Path(chronon_dir)
    if not root.is_dir():
        raise UsageError(f"{chronon_dir}: no such folder. Fix: give the folder of Chronon's "
                         "compiled configs (production/, with group_bys/ and joins/)")
    if not any((root / folder).is_dir() for folder in FOLDERS):
        raise UsageError(f"{chronon_dir}: has no group_bys/ or joins/ folder. Fix: give "
                         "Chronon's compiled output (production/), not its Python sources")
    table_types = load_types(types)
    return compile_repo(root, out, strict=strict, against=against, force=force, limits=limits,
                        reader=lambda repo: read_chronon(repo, table_types))
