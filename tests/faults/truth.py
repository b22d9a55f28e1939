"""The rule every fault, overload, hostile-input and soak test checks on every response.

Every group of every vector is either exactly what was loaded for that entity, group
and read time (statuses, values, event time: tests.e2e.truth.Truth), or, only for a
group the test allows to fail, ERROR on all of its features with no value and no
event time. A PRESENT value that differs from the loaded one, an ERROR on a group
that may not fail, or a group half ERROR and half served fails the test at once.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fetcher.client import FeatureValue, KeyInput, decode_vectors
from fetcher.types import Status
from tests.e2e.truth import Observed, Truth, observed_from_row

ERROR_OUTCOME = "ERROR"


@dataclass
class Tally:
    """What the checker has seen: vectors checked and each group's outcomes."""

    vectors: int = 0
    outcomes: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)

    def errors(self, group: str) -> int:
        """Vectors in which `group` was ERROR."""
        return self.outcomes[(group, ERROR_OUTCOME)]

    def served(self, group: str) -> int:
        """Vectors in which `group` was answered from the store (any non-ERROR outcome)."""
        return sum(n for (g, o), n in self.outcomes.items() if g == group and o != ERROR_OUTCOME)


class ResponseChecker:
    """Checks vectors against the loaded truth, allowing ERROR only where a test says so."""

    def __init__(self, truth: Truth) -> None:
        self.truth = truth
        self.tally = Tally()

    def check_row(
        self,
        row: Mapping[str, FeatureValue],
        keys: Mapping[str, KeyInput],
        read_ms: int,
        *,
        service: str | None = None,
        group: str | None = None,
        may_fail: Collection[str] = (),
    ) -> dict[str, str]:
        """Assert one decoded vector obeys the rule; returns each group's outcome."""
        observed = observed_from_row(row)
        features, outcomes = self.truth.expected(keys, read_ms, service=service, group=group)
        where = f"{service or group} {dict(keys)} at {read_ms}"
        by_group: dict[str, list[str]] = collections.defaultdict(list)
        for want in features:
            by_group[want.group].append(want.name)
        failed: set[str] = set()
        for group_name, names in by_group.items():
            statuses = {observed.features[n][1] for n in names if n in observed.features}
            if Status.ERROR in statuses:
                shown = sorted(s.name for s in statuses)
                assert statuses == {Status.ERROR}, f"{where}: {group_name} partly ERROR: {shown}"
                assert group_name in may_fail, f"{where}: group {group_name} is ERROR unexpectedly"
                assert observed.event_ms.get(group_name) == 0, (
                    f"{where}: ERROR group {group_name} has an event time"
                )
                for name in names:
                    _, _, value = observed.features[name]
                    assert not value, f"{where}: ERROR feature {name} carries a value {value!r}"
                failed.add(group_name)
        if failed:
            # The failed groups were checked above; stand the expected values in for them
            # so Truth compares every served group exactly as for a fault-free answer.
            features_seen = dict(observed.features)
            for want in features:
                if want.group in failed:
                    features_seen[want.name] = (want.type, want.status, want.value)
            event_ms = dict(observed.event_ms)
            for group_name in failed:
                event_ms[group_name] = outcomes[group_name].event_ms
            observed = Observed(features_seen, event_ms, observed.groups)
        self.truth.check(observed, keys, read_ms, service=service, group=group)
        result = {
            g: ERROR_OUTCOME if g in failed else outcomes[g].state.value for g in by_group
        }
        self.tally.vectors += 1
        for g, outcome in result.items():
            self.tally.outcomes[(g, outcome)] += 1
        return result

    def check_response(
        self,
        response: Any,
        entities: Sequence[Mapping[str, KeyInput]],
        read_ms: int,
        *,
        service: str | None = None,
        group: str | None = None,
        may_fail: Collection[str] = (),
    ) -> list[dict[str, str]]:
        """Check a GetFeaturesResponse (one entity) or GetBatchFeaturesResponse."""
        vectors = list(response.vectors) if hasattr(response, "vectors") else [response.vector]
        assert len(vectors) == len(entities), f"{len(vectors)} vectors for {len(entities)} entities"
        rows = decode_vectors(response.metadata, vectors)
        return [
            self.check_row(row, keys, read_ms, service=service, group=group, may_fail=may_fail)
            for row, keys in zip(rows, entities, strict=True)
        ]

