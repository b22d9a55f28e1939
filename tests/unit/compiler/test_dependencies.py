"""Stage 3 (dependencies): unknown references and cycles, printed as `a -> b -> a`."""

from __future__ import annotations

import json
from pathlib import Path

from fetcher.compiler import Stage
from tests.unit.compiler.repo_support import USERS, compile_files, line_of, one_error

GB_FILE = "group_bys/risk/users.py"
JOIN_FILE = "joins/risk/scoring.py"


def join_text(ref: str) -> str:
    return f"""
scoring = Join(
    left={{"user_id": "int64"}},
    right_parts=[JoinPart({ref}, prefix="user_")],
)
"""


def test_unknown_group_by_name(tmp_path: Path) -> None:
    files = {GB_FILE: USERS, JOIN_FILE: join_text('"risk.users.user_profil"')}
    p = one_error(compile_files(tmp_path / "bad", files), Stage.DEPENDENCIES)
    assert (p.file, p.line) == (JOIN_FILE, line_of(tmp_path / "bad" / "repo", JOIN_FILE, "scoring"))
    assert (p.definition, p.field) == ("risk.scoring.scoring", "right_parts[0].group_by")
    assert p.problem == "unknown group_by 'risk.users.user_profil'"
    assert p.fix == "define it in group_bys/ or use one of risk.users.user_profile"
    good = {GB_FILE: USERS, JOIN_FILE: join_text('"risk.users.user_profile"')}
    assert compile_files(tmp_path / "good", good).ok


def test_group_by_not_bound_under_group_bys(tmp_path: Path) -> None:
    inline = USERS.replace("user_profile = GroupBy(", "_inline = GroupBy(").replace(
        "online=True,", 'online=True, name="inline",')
    files = {GB_FILE: USERS, JOIN_FILE: inline + join_text("_inline")}
    p = one_error(compile_files(tmp_path, files), Stage.DEPENDENCIES)
    assert p.problem == ("GroupBy(name='inline') is not bound to a module-level variable "
                         "under group_bys/")
    assert p.fix == "define it in group_bys/<team>/<module>.py and import it"


CYCLE_GROUP = """
from_join = GroupBy(
    keys=["user_id"],
    sources=[JoinSource(join="risk.scoring.scoring", query=Query(selects=["user_id", "x"]),
                        columns={"user_id": "int64", "x": "double"})],
)
"""


def test_cycle_through_a_join_source(tmp_path: Path) -> None:
    files = {"group_bys/risk/derived.py": CYCLE_GROUP,
             JOIN_FILE: join_text('"risk.derived.from_join"')}
    p = one_error(compile_files(tmp_path / "bad", files), Stage.DEPENDENCIES)
    assert p.problem == ("circular dependency: risk.derived.from_join -> risk.scoring.scoring "
                         "-> risk.derived.from_join")
    assert p.fix == "break the cycle by removing one dependency"
    assert (p.file, p.field) == ("group_bys/risk/derived.py", "sources[0].join")
    # The neighbour: the group-by reads another join, which reads a plain group-by.
    ok = {"group_bys/risk/derived.py": CYCLE_GROUP.replace("risk.scoring.scoring",
                                                          "risk.base.base"),
          GB_FILE: USERS,
          "joins/risk/base.py": join_text("'risk.users.user_profile'").replace("scoring", "base"),
          JOIN_FILE: join_text('"risk.derived.from_join"')}
    report = compile_files(tmp_path / "good", ok)
    assert report.ok, [e.render() for e in report.errors]
    graph = json.loads((tmp_path / "good" / "out" / "metadata" / "dependencies.json").read_text())
    assert {"from": "group_by:risk.derived.from_join", "kind": "source",
            "to": "join:risk.base.base"} in graph["edges"]
    assert {"from": "join:risk.scoring.scoring", "kind": "part",
            "to": "group_by:risk.derived.from_join"} in graph["edges"]


def test_three_step_cycle_of_joins(tmp_path: Path) -> None:
    def chained(name: str, reads: str) -> str:
        return f"""
{name} = Join(
    left=JoinSource(join="{reads}", query=Query(selects=["user_id"]),
                    columns={{"user_id": "int64"}}),
    right_parts=[JoinPart("risk.users.user_profile", prefix="{name}_")],
)
"""
    files = {GB_FILE: USERS, "joins/risk/a.py": chained("a", "risk.c.c"),
             "joins/risk/b.py": chained("b", "risk.a.a"),
             "joins/risk/c.py": chained("c", "risk.b.b")}
    p = one_error(compile_files(tmp_path, files), Stage.DEPENDENCIES)
    assert p.problem == "circular dependency: risk.a.a -> risk.c.c -> risk.b.b -> risk.a.a"
    assert (p.file, p.field) == ("joins/risk/a.py", "left.join")
