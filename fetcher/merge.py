"""Merge: each join's row for one entity -> one feature vector, in the target's order.

A group whose lookup failed contributes ERROR statuses (and zero values) for its
features only; the other groups are served. Max age is checked here, against the
read time, because cached rows outlive the moment they were fetched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fetcher.plan import TargetPlan
from fetcher.rows import SLOT_COUNT, GroupRow
from fetcher.types import Status

# What a lookup resolves to: the decoded row, or the status of every feature of the group
# (NOT_FOUND when there is no row, ERROR when the store or the decoder failed).
LookupResult = GroupRow | int

NOT_FOUND = int(Status.NOT_FOUND)
ERROR = int(Status.ERROR)


@dataclass(slots=True)
class EntityVector:
    """One entity's features in response order: statuses, values by slot, event times by join."""

    statuses: list[int]
    values: list[list[Any]]
    event_ms: list[int]


def merge_vector(plan: TargetPlan, results: Sequence[LookupResult], read_ms: int) -> EntityVector:
    """Concatenate the joins' rows (`results[i]` for `plan.joins[i]`) into one vector."""
    statuses: list[int] = []
    values: list[list[Any]] = [[] for _ in range(SLOT_COUNT)]
    event_ms: list[int] = []
    for join, result in zip(plan.joins, results, strict=True):
        if type(result) is int:
            row = join.shape.empty_row(result)
        else:
            assert isinstance(result, GroupRow)
            row = result
            if join.max_age_ms is not None and row.event_ms < read_ms - join.max_age_ms:
                row = join.shape.stale_row(row)
        statuses.extend(row.statuses)
        for slot, slot_values in enumerate(row.values):
            if slot_values:
                values[slot].extend(slot_values)
        event_ms.append(row.event_ms)
    return EntityVector(statuses, values, event_ms)
