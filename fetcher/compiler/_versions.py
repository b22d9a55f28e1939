"""Semantic versions per object: what changed between two manifest entries and the bump it
implies, and the versions a compile records (docs/compiler.md, "Versions").

Breaking (a removed feature, a type that changed other than by a widening that keeps the
served type, a key change, an aggregation group's layout changed: the columns and operations
its stored events and batch parts are read by) -> major; an added feature -> minor; any other
change of the compiled form (description, TTL, cache, a widening such as int32 -> int64) ->
patch.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fetcher.compiler._compiled import CompiledOutput, Layout, ObjectEntry
from fetcher.compiler._discover import Definition
from fetcher.compiler._problems import Problem, Stage
from fetcher.compiler._types import Signature, feature_type

VERSION_RE = re.compile(r"^(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?(?:\.(0|[1-9][0-9]*))?$")
FIRST = (1, 0, 0)

Version = tuple[int, int, int]


class Bump(enum.IntEnum):
    """How much a change moves a version, from none to major."""

    NONE = 0
    PATCH = 1
    MINOR = 2
    MAJOR = 3

    @property
    def label(self) -> str:
        """none, patch, minor or major."""
        return self.name.lower()


def parse_version(text: object) -> Version | None:
    """`"2"`, `"2.1"` or `"2.1.0"` as (2, 1, 0); None if it is not a version."""
    m = VERSION_RE.match(text) if isinstance(text, str) else None
    if m is None:
        return None
    major, minor, patch = (int(g) if g else 0 for g in m.groups())
    return major, minor, patch


def format_version(v: Version) -> str:
    """(1, 2, 0) -> "1.2.0"."""
    return ".".join(str(n) for n in v)


def bumped(v: Version, bump: Bump) -> Version:
    """`v` moved by `bump`: 1.2.3 -> 2.0.0 (major), 1.3.0 (minor), 1.2.4 (patch)."""
    major, minor, patch = v
    if bump is Bump.MAJOR:
        return major + 1, 0, 0
    if bump is Bump.MINOR:
        return major, minor + 1, 0
    if bump is Bump.PATCH:
        return major, minor, patch + 1
    return v


def type_bump(old: Signature, new: Signature) -> Bump:
    """A feature's type change: patch for a widening that keeps the served type, else major."""
    if old == new:
        return Bump.NONE
    if old.widens_to(new) and feature_type(old.type) == feature_type(new.type):
        return Bump.PATCH
    return Bump.MAJOR


@dataclass(frozen=True, slots=True)
class Change:
    """What changed in one object between two manifests, and the bump it implies."""

    kind: str
    name: str
    old: ObjectEntry | None  # None: added
    new: ObjectEntry | None  # None: removed
    added: tuple[tuple[str, Signature], ...] = ()
    removed: tuple[tuple[str, Signature], ...] = ()
    changed: tuple[tuple[str, Signature, Signature], ...] = ()
    keys_changed: bool = False
    # Both served, and the aggregation layout differs (or one is an aggregation group and
    # the other a group of stored rows).
    layout_changed: bool = False
    bump: Bump = Bump.NONE

    @property
    def status(self) -> str:
        """added, removed, changed or unchanged."""
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed" if self.bump is not Bump.NONE else "unchanged"

    def reason(self) -> str:
        """The change in a few words, biggest first: "feature 'x' removed"."""
        def names(items: tuple[tuple[str, Signature], ...]) -> str:
            return ", ".join(repr(n) for n, _ in items[:3]) + (", ..." if len(items) > 3 else "")

        parts: list[str] = []
        if self.keys_changed:
            parts.append("keys changed")
        if self.layout_changed and self.old is not None and self.new is not None:
            parts.append(layout_reason(self.old.layout, self.new.layout))
        if self.removed:
            parts.append(f"feature(s) {names(self.removed)} removed")
        for n, old, new in self.changed:
            if type_bump(old, new) is Bump.MAJOR:
                parts.append(f"{n!r} changed from {old.render()} to {new.render()}")
        if self.added:
            parts.append(f"feature(s) {names(self.added)} added")
        if not parts and self.changed:
            parts.extend(f"{n!r} widened to {new.render()}" for n, _, new in self.changed)
        return "; ".join(parts) or "the compiled form changed (description, TTL, cache...)"


def compare(old: ObjectEntry, new: ObjectEntry) -> Change:
    """The change from `old` to `new` (entries of the same object)."""
    before, after = dict(old.features), dict(new.features)
    added = tuple((n, s) for n, s in new.features if n not in before)
    removed = tuple((n, s) for n, s in old.features if n not in after)
    changed = tuple((n, before[n], s) for n, s in new.features
                    if n in before and before[n] != s)
    keys_changed = old.keys != new.keys
    layout_changed = old.served and new.served and old.layout != new.layout
    if (keys_changed or layout_changed or removed
            or any(type_bump(o, n) is Bump.MAJOR for _, o, n in changed)):
        bump = Bump.MAJOR
    elif added:
        bump = Bump.MINOR
    elif old.hash != new.hash:
        bump = Bump.PATCH
    else:
        bump = Bump.NONE
    return Change(new.kind, new.name, old, new, added, removed, changed, keys_changed,
                  layout_changed, bump)


def layout_lines(old: Layout | None, new: Layout | None) -> list[str]:
    """An aggregation layout change line by line: `+ operation ...`, `- column ...`, or the
    change of kind (a group of stored rows <-> an aggregation group)."""
    if old is None or new is None:
        return [("now an aggregation group (was a group of stored rows)" if old is None
                 else "now a group of stored rows (was an aggregation group)")]
    lines: list[str] = []
    for what, a, b in (("column", old.columns, new.columns),
                       ("operation", old.operations, new.operations)):
        lines.extend(f"- {what} {x}" for x in a if x not in b)
        lines.extend(f"+ {what} {x}" for x in b if x not in a)
        if a != b and sorted(a) == sorted(b):
            lines.append(f"~ {what}s reordered")
    return lines


def layout_reason(old: Layout | None, new: Layout | None) -> str:
    """The layout change in a few words, for a version's reason."""
    if old is None or new is None:
        return layout_lines(old, new)[0]
    changed = [(w, d) for w, d, a, b in (("columns", "events", old.columns, new.columns),
                                         ("operations", "batch parts", old.operations,
                                          new.operations)) if a != b]
    return (f"aggregation {' and '.join(w for w, _ in changed)} changed (the stored "
            f"{' and '.join(d for _, d in changed)} are read by them)")


def compare_outputs(a: CompiledOutput, b: CompiledOutput) -> list[Change]:
    """Every object of either output, in (kind, name) order, with what changed."""
    out: list[Change] = []
    for key in sorted(set(a.objects) | set(b.objects)):
        old, new = a.objects.get(key), b.objects.get(key)
        if old is not None and new is not None:
            out.append(compare(old, new))
        elif new is not None:
            out.append(Change(new.kind, new.name, None, new))
        elif old is not None:
            out.append(Change(old.kind, old.name, old, None))
    return out


def _problem(d: Definition, problem: str, fix: str, warning: bool = False) -> Problem:
    return Problem(Stage.EVOLUTION, d.file, d.line, d.name, "version", problem, fix, warning)


def assign_versions(
    entries: Mapping[str, ObjectEntry], definitions: Mapping[str, Definition],
    previous: CompiledOutput | None, *, force: bool,
) -> tuple[dict[str, str], list[Problem]]:
    """The version each object records, and the problems: an explicit `version=` lower than
    the change needs, an online production object changed without a version bump or
    removed."""
    versions: dict[str, str] = {}
    problems: list[Problem] = []
    for key, new in entries.items():
        d = definitions[key]
        explicit = parse_version(d.obj.version)
        old = previous.objects.get(key) if previous is not None else None
        base = parse_version(old.version) if old is not None else None
        if old is None or base is None:
            versions[key] = format_version(explicit or FIRST)
            continue
        change = compare(old, new)
        needed = bumped(base, change.bump)
        what = f"{change.bump.label} change since {old.version}: {change.reason()}"
        if explicit is not None and explicit >= needed:
            versions[key] = format_version(explicit)
        elif explicit is not None:
            versions[key] = format_version(needed)
            if change.bump is Bump.NONE:
                problem = f"version={d.obj.version!r} is lower than the previous {old.version}"
            else:
                problem = (f"version={d.obj.version!r} is lower than the {what} needs "
                           f"({format_version(needed)})")
            fix = (f'set version="{format_version(needed)}" or higher, or remove version= to '
                   "have it computed")
            problems.append(_problem(d, problem, fix if force else f"{fix}, or compile with "
                                     "--force", warning=force))
        else:
            versions[key] = format_version(needed)
            if change.bump is not Bump.NONE and old.online and old.production and not force:
                problems.append(_problem(
                    d, f"the online production {d.kind} changed without a version bump "
                    f"({what})", f'confirm it with version="{format_version(needed)}" on the '
                    "definition, or compile with --force"))
    problems.extend(_removed_in_production(entries, previous, force=force))
    return versions, problems


def schema_changes(
    before: Mapping[str, ObjectEntry], after: Mapping[str, ObjectEntry],
    versions: Mapping[str, str],
) -> tuple[dict[str, Any], ...]:
    """Every object added, removed or changed since the previous output, for the report:
    kind, name, status, bump (null for added and removed), what changed, both versions."""
    out: list[dict[str, Any]] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None:
            change = compare(old, new)
        elif new is not None:
            change = Change(new.kind, new.name, None, new)
        else:
            assert old is not None
            change = Change(old.kind, old.name, old, None)
        if change.status == "unchanged":
            continue
        out.append({
            "kind": change.kind, "name": change.name, "status": change.status,
            "bump": change.bump.label if change.status == "changed" else None,
            "reason": change.reason() if change.status == "changed" else change.status,
            "from_version": old.version if old is not None else None,
            "to_version": versions.get(key) if new is not None else None,
        })
    return tuple(out)


def _removed_in_production(
    entries: Mapping[str, ObjectEntry], previous: CompiledOutput | None, *, force: bool,
) -> list[Problem]:
    """An online production object of the previous output that the definitions no longer
    have: its callers would get NOT_FOUND, so removing it takes --force."""
    if previous is None:
        return []
    manifest = f"{previous.folder}/metadata/version_manifest.json"
    problems = []
    for key, old in sorted(previous.objects.items()):
        if key in entries or not (old.online and old.production):
            continue
        kind = old.kind.replace("_", "-")
        problem = (f"the online production {kind} {old.name!r} (version {old.version}) of "
                   "the previous output is not defined any more: its callers would get "
                   "NOT_FOUND")
        fix = ("keep its definition (set online=False first, deploy, then remove it)"
               + ("" if force else ", or compile with --force"))
        problems.append(Problem(Stage.EVOLUTION, manifest, 1, old.name, "", problem, fix,
                                warning=force))
    return problems
