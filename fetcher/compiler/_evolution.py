"""Stage 4, evolution (schemas): each served group's new Avro schema against the previous
output's, and the previous schemas the new catalog keeps.

Rows already in the store were written with the previous current schema or one of its
previous schemas; each must stay readable with the new schema. On top of Avro's writer ->
reader resolution (fetcher.codec, as the catalog loader checks it) the issue's rules hold:
an added feature needs a default, a required feature (no default) may not be removed, a
type may only widen (int32 -> int64 -> float -> double, of list items too; non-null ->
nullable). A compatible change keeps the old schema as `groups/<name>.v<N>.avsc` (the first
free N above the count of earlier schemas: the naming of `AvroSchema(previous=...)` files),
and every earlier one stays: previous schemas accumulate for as long as the group keeps its
name (its dataset). The versions half of the stage is fetcher/compiler/_versions.py.

An aggregation group has no schema: its stored events and batch parts are read by position,
by its columns and operations (its layout). A changed layout is a warning (and a major
version, which an online production group must confirm); a group that changes kind (stored
rows <-> aggregation) on the same dataset is refused: the dataset holds the other kind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fetcher.codec import GroupCodec, SchemaError, SchemaRegistry
from fetcher.compiler._aggregation_group import aggregations_object
from fetcher.compiler._avsc import group_schema
from fetcher.compiler._compiled import CompiledGroup, CompiledOutput, Layout, SchemaFile
from fetcher.compiler._model import GroupModel
from fetcher.compiler._problems import Problem, ProblemSink, Stage
from fetcher.compiler._types import avro_signature
from fetcher.compiler._versions import layout_lines
from fetcher.definitions import AvroSchema

_VERSIONED_RE = re.compile(r"^(.*)_v([0-9]+)$")


@dataclass(frozen=True, slots=True)
class EvolutionResult:
    """Per served group the previous schemas its catalog entry lists, and the problems."""

    previous_files: dict[str, tuple[SchemaFile, ...]]
    problems: list[Problem]


def new_name(name: str) -> str:
    """The name a migration suggests: x -> x_v2, x_v2 -> x_v3."""
    m = _VERSIONED_RE.match(name)
    return f"{m.group(1)}_v{int(m.group(2)) + 1}" if m else f"{name}_v2"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _migration(g: GroupModel) -> str:
    return (f'give the GroupBy a new name, e.g. name="{new_name(g.name)}" (a new group and '
            "dataset; joins follow the object), and backfill it before deploying the catalog")


def _render(avro: Any) -> str:
    sig = avro_signature(avro)
    return sig.render() if sig is not None else json.dumps(avro)


def _field_rules(old: Mapping[str, Any], new: Mapping[str, Any], g: GroupModel,
                 sink: ProblemSink) -> bool:
    """The issue's rules between the previous and the new schema; True if any is broken."""
    before = len(sink.items)
    old_fields = {f["name"]: f for f in old.get("fields", ())}
    new_fields = {f["name"]: f for f in new.get("fields", ())}
    for name, f in old_fields.items():
        if name not in new_fields and "default" not in f:
            sink.error(f"features.{name}", f"required feature {name!r} ({_render(f['type'])}, "
                       "no default) was removed: readers of the group rely on it",
                       "keep it, or make it optional first (nullable=True or a default) and "
                       f"remove it in a later compile; or {_migration(g)}")
    for name, f in new_fields.items():
        was = old_fields.get(name)
        if was is None:
            if "default" not in f:
                sink.error(f"features.{name}", f"new feature {name!r} has no default, and rows "
                           "stored with the previous schema do not have it",
                           f"declare it nullable=True or with a default (Column(..., "
                           f"default=...)); or {_migration(g)}")
            continue
        a, b = avro_signature(was["type"]), avro_signature(f["type"])
        if a is not None and b is not None and not a.widens_to(b):
            sink.error(f"features.{name}", f"type changed from {a.render()} to {b.render()}, "
                       f"which is not a widening: rows stored with the previous schema hold "
                       f"{a.render()} values", f"keep {a.render()} or widen it (int32 -> int64 "
                       f"-> float -> double, or nullable); or {_migration(g)}")
    return len(sink.items) > before


def _user_files(repo: Path, g: GroupModel, taken: set[str],
                sink: ProblemSink) -> list[SchemaFile]:
    """The files `AvroSchema(previous=...)` lists, read (copied byte for byte)."""
    out: list[SchemaFile] = []
    for i, path in enumerate((g.obj.avro or AvroSchema()).previous):
        base = Path(path).name
        if base in taken or base == f"{g.name}.avsc":
            sink.error(f"avro.previous[{i}]", f"{base} would overwrite another catalog file",
                       f'name earlier schemas "<group>.v<N>.avsc", e.g. "{g.name}.v1.avsc"')
            continue
        data = (repo / path).read_bytes()
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            sink.error(f"avro.previous[{i}]", f"{path} is not JSON ({exc})",
                       "give the .avsc file a schema was written with, unchanged")
            continue
        if not isinstance(parsed, dict):
            sink.error(f"avro.previous[{i}]", f"{path} is not an Avro record",
                       "give the .avsc file a schema was written with, unchanged")
            continue
        out.append(SchemaFile(base, data, parsed))
    return out


def _register(registry: SchemaRegistry, f: SchemaFile, sink: ProblemSink) -> bytes | None:
    try:
        return registry.register(f.parsed, f"groups/{f.name}")
    except SchemaError as exc:
        sink.error("previous_schemas", f"{f.name} is not a valid Avro schema: {exc}",
                   "repair or remove the file in the previous output (or avro.previous)")
        return None


def _free_name(name: str, count: int, taken: set[str]) -> str:
    n = count + 1
    while f"{name}.v{n}.avsc" in taken:
        n += 1
    return f"{name}.v{n}.avsc"


def _listed(
    repo: Path, g: GroupModel, prev: CompiledGroup | None, registry: SchemaRegistry,
    current: bytes, taken: set[str], sink: ProblemSink,
) -> tuple[list[SchemaFile], dict[str, bytes]]:
    """The previous output's previous schemas, then avro.previous's, each schema once."""
    files: list[SchemaFile] = []
    fingerprints: dict[str, bytes] = {}  # file name -> fingerprint, of `files`
    carried = list(prev.previous) if prev is not None else []
    for f in carried:
        if f.name in taken:
            sink.error("previous_schemas", f"{f.name}, a previous schema of the previous output, "
                       "has the name of another group's schema", "rename the other group")
    carried = [f for f in carried if f.name not in taken]
    for f in [*carried, *_user_files(repo, g, taken, sink)]:
        fp = _register(registry, f, sink)
        if fp is None:
            continue
        other = next((x for x in files if x.name == f.name), None)
        if other is not None and other.data != f.data:
            sink.error("avro.previous", f"{f.name} of the previous output differs from the "
                       "file avro.previous lists under that name", "rename one of the files "
                       f'("{_free_name(g.name, len(files), taken | set(fingerprints))}")')
        elif fp not in fingerprints.values() and fp != current:
            files.append(f)
            fingerprints[f.name] = fp
    return files, fingerprints


def check_group(repo: Path, g: GroupModel, prev: CompiledGroup | None, taken: set[str],
                sink: ProblemSink) -> tuple[SchemaFile, ...]:
    """Stage 4 of one served group; its previous schemas (their names join `taken`)."""
    registry = SchemaRegistry()
    new = group_schema(g)
    new_fp = registry.register(new, f"groups/{g.name}.avsc")
    codec = GroupCodec(registry, new_fp)
    files, fingerprints = _listed(repo, g, prev, registry, new_fp, taken, sink)
    reported = len(sink.items)
    old_fp = _register(registry, prev.schema, sink) if prev is not None else None
    if prev is not None and old_fp is not None and old_fp != new_fp:
        if not _field_rules(prev.schema.parsed, new, g, sink):
            for problem in codec.check_writer(old_fp):
                sink.error("avro", f"rows written with the previous schema cannot be read with "
                           f"the new one: {problem}", "keep the record name (avro=AvroSchema("
                           f"record=...)) and the change compatible; or {_migration(g)}")
        if old_fp not in fingerprints.values():
            name = _free_name(g.name, len(files), taken | set(fingerprints))
            files.append(SchemaFile(name, prev.schema.data, prev.schema.parsed))
            fingerprints[name] = old_fp
    if len(sink.items) == reported:  # an earlier schema's problems would repeat the above
        for f in files:
            for problem in codec.check_writer(fingerprints[f.name]):
                sink.error("previous_schemas", f"rows written with {f.name} cannot be read "
                           f"with the new schema: {problem}",
                           f"keep the change compatible; or {_migration(g)}")
    taken.update(f.name for f in files)
    return tuple(files)


def _kind_changed(g: GroupModel, previous: CompiledOutput, sink: ProblemSink) -> None:
    """A served group whose dataset the previous output serves as the other kind of group."""
    was_rows = g.name in previous.groups and previous.groups[g.name].dataset == g.name
    was_log = (g.name in previous.aggregation_groups
               and previous.aggregation_groups[g.name].dataset == g.name)
    if g.aggregated and was_rows:
        sink.error("aggregations", f"the previous output serves {g.name!r} as a group of stored "
                   "rows: its dataset holds rows, not the log an aggregation group reads (their "
                   "versions would pass for batch ends)", _sentence(_migration(g)))
    elif not g.aggregated and was_log:
        sink.error("aggregations", f"the previous output serves {g.name!r} as an aggregation "
                   "group: its dataset holds a log of events and batch parts, not rows",
                   _sentence(_migration(g)))


def check_aggregation_group(g: GroupModel, previous: CompiledOutput | None,
                            sink: ProblemSink) -> None:
    """Stage 4 of one served aggregation group: its layout against the previous output's."""
    if previous is None:
        return
    _kind_changed(g, previous, sink)
    prev = previous.aggregation_groups.get(g.name)
    if prev is None or prev.dataset != g.name:
        return
    new = Layout.parse(aggregations_object(g))
    if new == prev.layout:
        return
    lines = layout_lines(prev.layout, new)
    shown = "; ".join(lines[:4]) + ("; ..." if len(lines) > 4 else "")
    sink.warn("aggregations", f"the aggregation layout changed since the previous output "
              f"({shown}): the stored batch parts hold one state per previous operation and "
              "the stored events one value per previous column, read by position, so until "
              "they are rewritten the features of the keys they hold are ERROR or wrong",
              "rewrite the batch parts with the new layout (rerun the batch job; if the "
              "columns changed, also the events after its batch end) before deploying this "
              f"catalog; or {_migration(g)}")


def check_evolution(repo: Path, groups: Mapping[str, GroupModel],
                    previous: CompiledOutput | None) -> EvolutionResult:
    """Run stage 4's checks over every served group (in name order): schemas of groups of
    stored rows, layouts of aggregation groups."""
    served = sorted(n for n, g in groups.items() if not g.aggregated)
    taken = {f"{n}.avsc" for n in served}
    problems: list[Problem] = []
    files: dict[str, tuple[SchemaFile, ...]] = {}
    for name in served:
        g = groups[name]
        d = g.definition
        sink = ProblemSink(Stage.EVOLUTION, d.file, d.line, d.name)
        prev = previous.groups.get(name) if previous is not None else None
        if prev is not None and prev.dataset != name:
            prev = None  # another dataset: none of its rows are read by this group
        files[name] = check_group(repo, g, prev, taken, sink)
        if previous is not None:
            _kind_changed(g, previous, sink)
        problems.extend(sink.items)
    for name in sorted(n for n, g in groups.items() if g.aggregated and g.served):
        d = groups[name].definition
        sink = ProblemSink(Stage.EVOLUTION, d.file, d.line, d.name)
        check_aggregation_group(groups[name], previous, sink)
        problems.extend(sink.items)
    return EvolutionResult(files, problems)
