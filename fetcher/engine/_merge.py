"""Merge: each join's row for one entity -> one feature vector, in the target's order.

A group whose lookup failed contributes ERROR statuses (and zero values) for its
features only; the other groups are served. Max age is checked here, against the
read time, because cached rows outlive the moment they were fetched.
"""

from __future__ import annotations

from collections.abc import Sequence

from fetcher.engine._plan import TargetPlan
from fetcher.engine._rows import GroupRow
from fetcher.types import Status

# What a lookup resolves to: the decoded row, or the status of every feature of the group
# (NOT_FOUND when there is no row, ERROR when the store or the decoder failed).
LookupResult = GroupRow | int

NOT_FOUND = int(Status.NOT_FOUND)
ERROR = int(Status.ERROR)


class EntityVector:
    """One entity's features in response order, as a serialized FeatureVector (`wire`).

    The serving path hands `wire` to protobuf as is; fetcher.api.VectorView reads it back
    (statuses, values, event times) for tests and tools.
    """

    __slots__ = ("wire",)

    def __init__(self, wire: bytes) -> None:
        self.wire = wire


def merge_vector(plan: TargetPlan, results: Sequence[LookupResult], read_ms: int) -> EntityVector:
    """Concatenate the joins' rows (`results[i]` for `plan.joins[i]`) into one vector."""
    parts: list[bytes] = []
    for join, result in zip(plan.joins, results, strict=True):
        if isinstance(result, int):
            parts.append(join.shape.empty_row(result).wire)
        elif join.max_age_ms is not None and result.event_ms < read_ms - join.max_age_ms:
            parts.append(join.shape.stale_row(result).wire)
        else:
            parts.append(result.wire)
    return EntityVector(b"".join(parts))


def merge_wires(
    plan: TargetPlan,
    columns: Sequence[Sequence[LookupResult]],
    at_ms: Sequence[int | None],
    now_ms: int,
) -> list[bytes]:
    """merge_vector for many entities at once: the wire bytes of each entity's vector.

    `columns[j][i]` is join j's result for entity i; entity i is read as of `at_ms[i]`,
    or `now_ms` when that is None.
    Join by join rather than entity by entity: a join without a max age is one list
    comprehension over its column, and the joins are concatenated with one C-level
    `b"".join` per entity. Gives exactly merge_vector's bytes.
    """
    per_join: list[list[bytes]] = []
    row_type = GroupRow
    for join, column in zip(plan.joins, columns, strict=True):
        empty = join.shape.empty_row
        max_age = join.max_age_ms
        if max_age is None:
            per_join.append(
                [r.wire if r.__class__ is row_type else empty(r).wire for r in column]  # type: ignore[arg-type]
            )
            continue
        stale = join.shape.stale_row
        wires: list[bytes] = []
        for result, at in zip(column, at_ms, strict=True):
            if isinstance(result, int):
                wires.append(empty(result).wire)
            elif result.event_ms < (now_ms if at is None else at) - max_age:
                wires.append(stale(result).wire)
            else:
                wires.append(result.wire)
        per_join.append(wires)
    if len(per_join) == 1:
        return per_join[0]
    if not per_join:
        return [b""] * len(at_ms)
    return list(map(b"".join, zip(*per_join, strict=True)))
