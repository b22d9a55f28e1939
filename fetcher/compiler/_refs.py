"""References between definitions: a JoinPart's group-by, a JoinSource's join.

A reference is the object itself or its served name. An object imported by another
definition file under its natural module name (`from group_bys.risk.users import x`) is
a copy of the collected one, so objects resolve by identity first, then by equality.
"""

from __future__ import annotations

from fetcher.compiler._discover import Definition
from fetcher.definitions import GroupBy, Join


class References:
    """Resolves references to the collected definitions."""

    def __init__(self, definitions: tuple[Definition, ...]) -> None:
        self._by_id = {id(d.obj): d for d in definitions}
        self._by_name = {(d.kind, d.name): d for d in definitions}
        self._all = definitions

    def resolve(self, ref: object, kind: str) -> Definition | None:
        """The definition `ref` (an object or a name) refers to, or None if none."""
        if isinstance(ref, str):
            return self._by_name.get((kind, ref))
        if not isinstance(ref, GroupBy | Join):
            return None
        found = self._by_id.get(id(ref))
        if found is not None:
            return found if found.kind == kind else None
        return next((d for d in self._all if d.kind == kind and d.obj == ref), None)


def describe(ref: object) -> str:
    """A reference as a message quotes it."""
    if isinstance(ref, str):
        return repr(ref)
    if isinstance(ref, GroupBy | Join) and ref.name:
        return f"{type(ref).__name__}(name={ref.name!r})"
    return f"a {type(ref).__name__} object"
