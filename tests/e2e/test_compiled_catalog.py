"""Generated valid definitions compile (twice: byte-identical), `fetcher load` writes rows for
every group into an embedded store, and the real `fetcher serve` on the compiled catalog
answers GetFeatures for every group and every join with exactly the rows written."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fetcher.client import FeatureClient, FeatureValue
from fetcher.compiler import compile_repo
from fetcher.types import FeatureType
from tests.e2e.compiled_support import (
    check_not_found,
    check_present,
    compile_cli,
    load_cli,
    tree_bytes,
    write_jsonl,
)
from tests.e2e.conftest import FETCHER_MODULE, serving, write_settings
from tests.servers import free_port
from tests.unit.compiler.generated_repo import (
    GroupSpec,
    RepoSpec,
    feature_names,
    group_name,
    join_name,
    key_names,
    part_prefix,
    repo_files,
    repo_st,
)
from tests.unit.compiler.repo_support import write_repo

pytestmark = pytest.mark.e2e

MISSING: Any = object()  # a nullable feature left out of the JSONL row: its default (null)

_SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "int64": st.integers(-(2**63), 2**63 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "double": st.floats(allow_nan=False),
    "float": st.floats(width=32, allow_nan=False),
    "string": st.text(st.characters(codec="utf-8"), max_size=8),
    "bool": st.booleans(),
    "bytes": st.binary(max_size=8),
}
_KEYS: dict[str, st.SearchStrategy[Any]] = {
    "int64": _SCALARS["int64"], "string": _SCALARS["string"], "bytes": _SCALARS["bytes"],
}


def _value_st(kind: str, nullable: bool) -> st.SearchStrategy[Any]:
    value = (st.lists(_SCALARS[kind[5:-1]], max_size=4) if kind.startswith("list<")
             else _SCALARS[kind])
    return st.one_of(value, st.just(None), st.just(MISSING)) if nullable else value


@dataclass(frozen=True)
class Row:
    """One written row: key values, feature values (None: null; MISSING: left out)."""

    keys: tuple[Any, ...]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Case:
    """A generated repository, its rows, an unwritten key per group and the join requests
    (per join, per entity: the row of each part, None for the part's unwritten key)."""

    spec: RepoSpec
    rows: tuple[tuple[Row, ...], ...]
    unknown: tuple[tuple[Any, ...], ...]
    join_entities: tuple[tuple[tuple[int | None, ...], ...], ...]


@st.composite
def case_st(draw: st.DrawFn) -> Case:
    spec = draw(repo_st().filter(lambda s: any(g.online for g in s.groups)))
    rows: list[tuple[Row, ...]] = []
    unknown: list[tuple[Any, ...]] = []
    for g in spec.groups:
        # The last key is the group's unwritten one.
        keys = draw(st.lists(st.tuples(*(_KEYS[k] for k in g.keys)), min_size=2, max_size=5,
                             unique=True))
        values_st = st.tuples(*(_value_st(kind, nullable) for kind, nullable in g.columns))
        rows.append(tuple(Row(k, draw(values_st)) for k in keys[:-1]))
        unknown.append(keys[-1])
    join_entities = tuple(
        tuple(draw(st.lists(
            st.tuples(*(st.one_of(st.none(), st.integers(0, len(rows[i]) - 1)) for i in parts)),
            min_size=1, max_size=3)))
        for parts in spec.joins
    )
    return Case(spec, tuple(rows), tuple(unknown), join_entities)


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()  # how `fetcher load` reads bytes from JSON
    return value


def _jsonl_rows(i: int, g: GroupSpec, rows: Sequence[Row], now_ms: int) -> list[dict[str, Any]]:
    out = []
    for n, row in enumerate(rows):
        record: dict[str, Any] = {k: _json_value(v)
                                  for k, v in zip(key_names(i, g), row.keys, strict=True)}
        record["event_time"] = _event_ms(now_ms, n)
        for name, value in zip(feature_names(g), row.values, strict=True):
            if value is not MISSING:
                record[name] = _json_value(value)
        out.append(record)
    return out


def _event_ms(now_ms: int, n: int | None) -> int:
    """The event time of a group's row `n` (written a minute apart; None: no row)."""
    return 0 if n is None else now_ms - 60_000 * (n + 1)


def _keys(i: int, g: GroupSpec, values: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(key_names(i, g), values, strict=True))


# What the server answers for each column type: int32 and float are Avro's narrower forms.
_SERVED_TYPE = {
    "int64": FeatureType.INT64, "int32": FeatureType.INT64,
    "double": FeatureType.DOUBLE, "float": FeatureType.DOUBLE,
    "string": FeatureType.STRING, "bool": FeatureType.BOOL, "bytes": FeatureType.BYTES,
    "list<int64>": FeatureType.INT64_LIST, "list<int32>": FeatureType.INT64_LIST,
    "list<double>": FeatureType.DOUBLE_LIST, "list<float>": FeatureType.DOUBLE_LIST,
    "list<string>": FeatureType.STRING_LIST, "list<bool>": FeatureType.BOOL_LIST,
}


def _check_part(got: dict[str, FeatureValue], prefix: str, g: GroupSpec, row: Row | None,
                event_ms: int) -> None:
    for n, (name, (kind, _)) in enumerate(zip(feature_names(g), g.columns, strict=True)):
        value, ftype = got[prefix + name], _SERVED_TYPE[kind]
        if row is None:
            check_not_found(value, ftype)
        else:
            expected = row.values[n]
            check_present(value, None if expected is MISSING else expected, event_ms, ftype)


def _refused_offline(call: Any) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION, refused.value


def _check_groups(client: FeatureClient, case: Case, now_ms: int) -> None:
    for i, g in enumerate(case.spec.groups):
        name = group_name(i)
        rows = case.rows[i]
        entities = [_keys(i, g, r.keys) for r in rows] + [_keys(i, g, case.unknown[i])]
        if not g.online:
            _refused_offline(lambda: client.get(keys=entities[0], group=name))  # noqa: B023
            continue
        expected: list[Row | None] = [*rows, None]
        batch = client.get_batch(entities, group=name)
        for n, (keys, row) in enumerate(zip(entities, expected, strict=True)):
            for got in (client.get(keys=keys, group=name), batch[n]):
                assert list(got) == feature_names(g)
                _check_part(got, "", g, row, _event_ms(now_ms, n))


def _check_joins(client: FeatureClient, case: Case, now_ms: int) -> None:
    spec = case.spec
    for j, parts in enumerate(spec.joins):
        name = join_name(j)
        # The generated entities, and one whose every part is unwritten.
        choices = (*case.join_entities[j], (None,) * len(parts))
        entities = [
            {k: v for i, n in zip(parts, choice, strict=True)
             for k, v in _keys(i, spec.groups[i],
                               case.unknown[i] if n is None else case.rows[i][n].keys).items()}
            for choice in choices
        ]
        if not all(spec.groups[i].online for i in parts):
            _refused_offline(lambda: client.get(keys=entities[0], service=name))  # noqa: B023
            continue
        batch = client.get_batch(entities, service=name)
        for e, (keys, choice) in enumerate(zip(entities, choices, strict=True)):
            for got in (client.get(keys=keys, service=name), batch[e]):
                assert list(got) == [part_prefix(i) + f for i in parts
                                     for f in feature_names(spec.groups[i])]
                for i, n in zip(parts, choice, strict=True):
                    row = None if n is None else case.rows[i][n]
                    _check_part(got, part_prefix(i), spec.groups[i], row, _event_ms(now_ms, n))


# Each example compiles with the CLI and starts a real server (~3 s here, more on a
# busy 2-core machine): 8 examples, no shrinking (each shrink step would start another server).
@pytest.mark.timeout(600)
@settings(max_examples=8, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case_st())
def test_generated_definitions_compile_load_and_serve(case: Case) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        repo = write_repo(tmp / "repo", repo_files(case.spec))
        out = tmp / "catalog"
        compile_cli(repo, out)
        first = tree_bytes(out)
        compile_cli(repo, out)  # again, now against its own output: nothing changes
        assert tree_bytes(out) == first
        report = compile_repo(repo, tmp / "elsewhere")  # in process, to another folder
        assert report.ok, [p.render() for p in report.errors]
        assert tree_bytes(tmp / "elsewhere") == first

        port = free_port()
        store = tmp / "store.lmdb"
        settings_path = write_settings(tmp / "settings.toml", port=port, config_dir=out,
                                       store_url=f"embedded://{store}")
        now_ms = time.time_ns() // 1_000_000
        load_cli(settings_path, {
            group_name(i): (write_jsonl(tmp / f"g{i}.jsonl", _jsonl_rows(i, g, rows, now_ms)),
                            len(rows))
            for i, (g, rows) in enumerate(zip(case.spec.groups, case.rows, strict=True))
        })
        with (serving("compiled", settings_path, port, tmp / "server.log",
                      command=FETCHER_MODULE) as server,
              FeatureClient(server.target, timeout_s=10.0) as client):
            try:
                _check_groups(client, case, now_ms)
                _check_joins(client, case, now_ms)
            except Exception as exc:
                exc.add_note(f"server log:\n{server.log_tail()}")
                raise
