"""Generated valid definitions compile, and `fetcher.catalog.load_catalog` accepts the output
with exactly the features, types and keys the definitions describe."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.catalog import load_catalog
from fetcher.compiler import compile_repo
from fetcher.compiler._types import feature_type
from tests.unit.compiler.repo_support import write_repo

COLUMN_TYPES = ["int64", "int32", "double", "float", "string", "bool", "bytes", "list<int64>",
                "list<int32>", "list<double>", "list<float>", "list<string>", "list<bool>"]
KEY_TYPES = ["int64", "string", "bytes"]

group_st = st.fixed_dictionaries({
    "keys": st.lists(st.sampled_from(KEY_TYPES), min_size=1, max_size=2),
    "columns": st.lists(st.tuples(st.sampled_from(COLUMN_TYPES), st.booleans()),
                        min_size=1, max_size=5),
    "online": st.booleans(),
})


@st.composite
def repo_st(draw: st.DrawFn) -> tuple[list[dict[str, object]], list[list[int]]]:
    groups = draw(st.lists(group_st, min_size=1, max_size=3))
    joins = draw(st.lists(
        st.lists(st.integers(0, len(groups) - 1), min_size=1, max_size=3, unique=True),
        max_size=2))
    return groups, joins


def _group_text(i: int, g: dict[str, object]) -> str:
    keys = {f"k{i}_{n}": t for n, t in enumerate(g["keys"])}  # type: ignore[arg-type]
    columns: dict[str, str] = dict(keys)
    decl = [f'"{k}": "{t}"' for k, t in keys.items()]
    for n, (kind, nullable) in enumerate(g["columns"]):  # type: ignore[arg-type]
        columns[f"f{n}"] = kind
        decl.append(f'"f{n}": Column("{kind}", "feature {n}", nullable={nullable})')
    return f"""
g{i} = GroupBy(
    keys={list(keys)},
    sources=[EntitySource(snapshot_table="t{i}", query=Query(selects={list(columns)}),
                          columns={{{", ".join(decl)}}})],
    online={g["online"]},
)
"""


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(repo_st())
def test_generated_definitions_compile_to_a_loadable_catalog(
    case: tuple[list[dict[str, object]], list[list[int]]],
) -> None:
    groups, joins = case
    files = {f"group_bys/team/m{i}.py": _group_text(i, g) for i, g in enumerate(groups)}
    for j, parts in enumerate(joins):
        imports = "".join(f"from group_bys.team.m{i} import g{i}\n" for i in parts)
        left = {f"k{i}_{n}": t for i in parts
                for n, t in enumerate(groups[i]["keys"])}  # type: ignore[arg-type]
        online = all(groups[i]["online"] for i in parts)
        right = ", ".join(f'JoinPart(g{i}, prefix="p{i}_")' for i in parts)
        files[f"joins/team/j{j}.py"] = (
            f"{imports}\nj{j} = Join(left={left!r}, right_parts=[{right}], online={online})\n"
        )
    with tempfile.TemporaryDirectory() as tmp:
        repo = write_repo(Path(tmp) / "repo", files)
        report = compile_repo(repo, Path(tmp) / "out")
        assert report.ok, [e.render() for e in report.errors]
        catalog = load_catalog(Path(tmp) / "out")
    assert set(catalog.groups) == {f"team.m{i}.g{i}" for i in range(len(groups))}
    for i, g in enumerate(groups):
        served = catalog.groups[f"team.m{i}.g{i}"]
        expected = [(f"f{n}", feature_type(kind), nullable)
                    for n, (kind, nullable) in enumerate(g["columns"])]  # type: ignore[arg-type]
        assert [(f.name, f.type, f.nullable) for f in served.features] == expected
        assert [k.name for k in served.keys] == [f"k{i}_{n}" for n in range(len(g["keys"]))]  # type: ignore[arg-type]
        assert served.online is g["online"]
    for j, parts in enumerate(joins):
        service = catalog.services[f"team.j{j}.j{j}"]
        assert [(x.group, x.prefix) for x in service.joins] == [
            (f"team.m{i}.g{i}", f"p{i}_") for i in parts]
