"""Generated definition repositories: hypothesis strategies for valid group-bys and joins,
and the Python files that define them (shared by the unit property test and the e2e test
that serves what they compile to)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

COLUMN_TYPES = ["int64", "int32", "double", "float", "string", "bool", "bytes", "list<int64>",
                "list<int32>", "list<double>", "list<float>", "list<string>", "list<bool>"]
KEY_TYPES = ["int64", "string", "bytes"]


@dataclass(frozen=True)
class GroupSpec:
    """One generated group-by: key types, (column type, nullable) per feature, online."""

    keys: tuple[str, ...]
    columns: tuple[tuple[str, bool], ...]
    online: bool


@dataclass(frozen=True)
class RepoSpec:
    """Generated group-bys and joins (each join: the indexes of the groups it joins)."""

    groups: tuple[GroupSpec, ...]
    joins: tuple[tuple[int, ...], ...]


group_st = st.builds(
    GroupSpec,
    keys=st.lists(st.sampled_from(KEY_TYPES), min_size=1, max_size=2).map(tuple),
    columns=st.lists(st.tuples(st.sampled_from(COLUMN_TYPES), st.booleans()),
                     min_size=1, max_size=5).map(tuple),
    online=st.booleans(),
)


@st.composite
def repo_st(draw: st.DrawFn) -> RepoSpec:
    """1-3 group-bys and 0-2 joins of 1-3 of them."""
    groups = draw(st.lists(group_st, min_size=1, max_size=3))
    joins = draw(st.lists(
        st.lists(st.integers(0, len(groups) - 1), min_size=1, max_size=3, unique=True),
        max_size=2))
    return RepoSpec(tuple(groups), tuple(tuple(parts) for parts in joins))


def group_name(i: int) -> str:
    """The compiled (served) name of group-by `i`."""
    return f"team.m{i}.g{i}"


def join_name(j: int) -> str:
    """The compiled (served) name of join `j`."""
    return f"team.j{j}.j{j}"


def key_names(i: int, group: GroupSpec) -> list[str]:
    """Group-by `i`'s key columns, in order (unique across groups: joins feed each part)."""
    return [f"k{i}_{n}" for n in range(len(group.keys))]


def feature_names(group: GroupSpec) -> list[str]:
    """A group-by's features, in order."""
    return [f"f{n}" for n in range(len(group.columns))]


def part_prefix(i: int) -> str:
    """The prefix of group-by `i` in every join."""
    return f"p{i}_"


def _group_text(i: int, g: GroupSpec) -> str:
    keys = dict(zip(key_names(i, g), g.keys, strict=True))
    columns: dict[str, str] = dict(keys)
    decl = [f'"{k}": "{t}"' for k, t in keys.items()]
    for n, (kind, nullable) in enumerate(g.columns):
        columns[f"f{n}"] = kind
        decl.append(f'"f{n}": Column("{kind}", "feature {n}", nullable={nullable})')
    return f"""
g{i} = GroupBy(
    keys={list(keys)},
    sources=[EntitySource(snapshot_table="t{i}", query=Query(selects={list(columns)}),
                          columns={{{", ".join(decl)}}})],
    online={g.online},
)
"""


def repo_files(spec: RepoSpec) -> dict[str, str]:
    """The definition files of `spec` (relative path -> source, for repo_support.write_repo)."""
    groups = spec.groups
    files = {f"group_bys/team/m{i}.py": _group_text(i, g) for i, g in enumerate(groups)}
    for j, parts in enumerate(spec.joins):
        imports = "".join(f"from group_bys.team.m{i} import g{i}\n" for i in parts)
        left = {k: t for i in parts
                for k, t in zip(key_names(i, groups[i]), groups[i].keys, strict=True)}
        online = all(groups[i].online for i in parts)
        right = ", ".join(f'JoinPart(g{i}, prefix="{part_prefix(i)}")' for i in parts)
        files[f"joins/team/j{j}.py"] = (
            f"{imports}\nj{j} = Join(left={left!r}, right_parts=[{right}], online={online})\n"
        )
    return files
