"""What the server must answer: every loaded version, and a checker of whole vectors.

`Truth` holds each group's versions exactly as written to the load files. For a
(target, entity keys, read time) it computes the expected vector (names, types,
statuses, values and event times) and `check` compares a response with it,
feature by feature, floats exactly.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fetcher.catalog._loader import Catalog
from fetcher.client import FeatureValue, KeyInput
from fetcher.demo._data import DemoRow
from fetcher.types import FeatureType, Status

# The proto zero value a non-PRESENT feature carries in its slot.
_ZERO: dict[FeatureType, Any] = {
    FeatureType.DOUBLE: 0.0,
    FeatureType.INT64: 0,
    FeatureType.STRING: "",
    FeatureType.BOOL: False,
    FeatureType.BYTES: b"",
    FeatureType.DOUBLE_LIST: [],
    FeatureType.INT64_LIST: [],
    FeatureType.STRING_LIST: [],
    FeatureType.BOOL_LIST: [],
}
_PY_TYPE: dict[FeatureType, type[Any]] = {
    FeatureType.DOUBLE: float,
    FeatureType.INT64: int,
    FeatureType.STRING: str,
    FeatureType.BOOL: bool,
    FeatureType.BYTES: bytes,
    FeatureType.DOUBLE_LIST: float,
    FeatureType.INT64_LIST: int,
    FeatureType.STRING_LIST: str,
    FeatureType.BOOL_LIST: bool,
}


class RowState(enum.Enum):
    """What a group contributed to a vector: a fresh row, no row, or a too old row."""

    PRESENT = "PRESENT"
    NOT_FOUND = "NOT_FOUND"
    OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    """One group's part of an expected vector: its state and the row's event time (0: none)."""

    state: RowState
    event_ms: int


@dataclass(frozen=True, slots=True)
class ExpectedFeature:
    """One feature of an expected vector."""

    name: str
    type: FeatureType
    status: Status
    value: Any
    group: str


@dataclass(frozen=True, slots=True)
class Observed:
    """A response vector in a neutral form: (type, status, value) per name, event ms per group."""

    features: Mapping[str, tuple[FeatureType, Status, Any]]
    event_ms: Mapping[str, int]
    groups: Mapping[str, str]  # feature name -> group, where the response says it


def observed_from_row(row: Mapping[str, FeatureValue]) -> Observed:
    """A client-decoded vector as an Observed; a group's event time must agree across features."""
    event_ms: dict[str, int] = {}
    for value in row.values():
        seen = event_ms.setdefault(value.group, value.event_ms)
        assert seen == value.event_ms, f"{value.name}: event time differs within {value.group}"
    return Observed(
        features={n: (v.type, v.status, v.value) for n, v in row.items()},
        event_ms=event_ms,
        groups={n: v.group for n, v in row.items()},
    )


class Truth:
    """Every version of every entity, by group, as loaded; answers like the server must."""

    def __init__(self, catalog: Catalog, rows: Mapping[str, Iterable[DemoRow]]) -> None:
        self.catalog = catalog
        self._versions: dict[str, dict[tuple[KeyInput, ...], list[DemoRow]]] = {}
        for group_name, group_rows in rows.items():
            by_key = self._versions.setdefault(group_name, {})
            for row in group_rows:
                by_key.setdefault(tuple(row.keys), []).append(row)
        for by_key in self._versions.values():
            for versions in by_key.values():
                versions.sort(key=lambda r: r.event_ms)
                times = [r.event_ms for r in versions]
                assert len(set(times)) == len(times), "two versions share an event time"

    def versions(self, group: str, key: Sequence[KeyInput]) -> list[DemoRow]:
        """The versions of one entity of `group`, oldest first."""
        return list(self._versions[group].get(tuple(key), []))

    def row_at(self, group: str, key: Sequence[KeyInput], read_ms: int) -> DemoRow | None:
        """The newest version at or before `read_ms`, if any."""
        found = None
        for row in self._versions[group].get(tuple(key), []):
            if row.event_ms <= read_ms:
                found = row
        return found

    def _joins(
        self, service: str | None, group: str | None
    ) -> list[tuple[str, str, dict[str, str]]]:
        """(group, prefix, group key column -> request key name) per join of the target."""
        if group is not None:
            columns = self.catalog.groups[group].keys
            return [(group, "", {c.name: c.name for c in columns})]
        assert service is not None
        joins = []
        for join in self.catalog.services[service].joins:
            to_request = {column: request for request, column in join.key_mapping}
            columns = self.catalog.groups[join.group].keys
            mapping = {c.name: to_request.get(c.name, c.name) for c in columns}
            joins.append((join.group, join.prefix, mapping))
        return joins

    def expected(
        self,
        keys: Mapping[str, KeyInput],
        read_ms: int,
        *,
        service: str | None = None,
        group: str | None = None,
    ) -> tuple[list[ExpectedFeature], dict[str, GroupOutcome]]:
        """The vector the server must return for one entity read at `read_ms`."""
        features: list[ExpectedFeature] = []
        outcomes: dict[str, GroupOutcome] = {}
        for group_name, prefix, mapping in self._joins(service, group):
            spec = self.catalog.groups[group_name]
            key = tuple(keys[mapping[c.name]] for c in spec.keys)
            row = self.row_at(group_name, key, read_ms)
            if row is None:
                outcome = GroupOutcome(RowState.NOT_FOUND, 0)
            elif spec.max_age_s is not None and row.event_ms < read_ms - spec.max_age_s * 1000:
                outcome = GroupOutcome(RowState.OUTSIDE_MAX_AGE, row.event_ms)
            else:
                outcome = GroupOutcome(RowState.PRESENT, row.event_ms)
            outcomes[group_name] = outcome
            for feature in spec.features:
                zero = _ZERO[feature.type]
                if outcome.state is not RowState.PRESENT:
                    status, value = Status[outcome.state.value], zero
                else:
                    assert row is not None
                    value = row.record[feature.name]
                    status = Status.PRESENT if value is not None else Status.NULL_VALUE
                    value = zero if value is None else value
                features.append(
                    ExpectedFeature(prefix + feature.name, feature.type, status, value, group_name)
                )
        return features, outcomes

    def check(
        self,
        observed: Observed | Mapping[str, FeatureValue],
        keys: Mapping[str, KeyInput],
        read_ms: int,
        *,
        service: str | None = None,
        group: str | None = None,
    ) -> dict[str, GroupOutcome]:
        """Assert that `observed` is exactly the expected vector; returns each group's outcome."""
        if not isinstance(observed, Observed):
            observed = observed_from_row(observed)
        features, outcomes = self.expected(keys, read_ms, service=service, group=group)
        where = f"{service or group} {dict(keys)} at {read_ms}"
        assert list(observed.features) == [f.name for f in features], f"{where}: feature names"
        problems = []
        for want in features:
            got_type, got_status, got_value = observed.features[want.name]
            if got_type != want.type or got_status != want.status:
                problems.append(
                    f"{want.name}: got {got_type.name} {got_status.name}, "
                    f"want {want.type.name} {want.status.name}"
                )
            elif not _same_value(want.type, got_value, want.value):
                problems.append(f"{want.name}: got {got_value!r}, want {want.value!r}")
            owner = observed.groups.get(want.name, want.group)
            if owner != want.group:
                problems.append(f"{want.name}: group {owner!r}, want {want.group!r}")
        for group_name, outcome in outcomes.items():
            got_ms = observed.event_ms.get(group_name)
            if got_ms != outcome.event_ms:
                problems.append(f"{group_name}: event time {got_ms}, want {outcome.event_ms}")
        assert not problems, f"{where}:\n  " + "\n  ".join(problems)
        return outcomes


def _same_value(kind: FeatureType, got: Any, want: Any) -> bool:
    """Exact equality, with the Python type the feature type decodes to (no 1 == True)."""
    py_type = _PY_TYPE[kind]
    if kind.name.endswith("_LIST"):
        return (
            isinstance(got, list)
            and all(type(v) is py_type for v in got)
            and list(got) == list(want)
        )
    return type(got) is py_type and got == want
