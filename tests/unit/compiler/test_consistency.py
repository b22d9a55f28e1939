"""Stage 2 (consistency): online/production, key mappings, accuracy, event times, TTLs."""

from __future__ import annotations

from pathlib import Path

from fetcher.compiler import Stage
from tests.unit.compiler.repo_support import compile_files, line_of, one_error

GB_FILE = "group_bys/risk/users.py"
JOIN_FILE = "joins/risk/scoring.py"
JOIN_OBJECT = "risk.scoring.scoring"
GROUP = """
user_profile = GroupBy(
    keys=["user_id"],
    sources=[EventSource(
        table="events.users",
        query=Query(selects=["user_id", "age", "amount"], time_column="ts"),
        columns={"user_id": "int64", "age": "int64", "amount": "double"},
    )],
    online=True,
    {extra}
)
"""
JOIN = """
from group_bys.risk.users import user_profile

scoring = Join(
    left={left},
    right_parts=[JoinPart(user_profile, {part})],
    online=True,
    {extra}
)
"""


def repo(group: str = "", left: str = '{"user_id": "int64"}', part: str = "",
         join: str = "") -> dict[str, str]:
    return {GB_FILE: GROUP.replace("{extra}", group),
            JOIN_FILE: JOIN.format(left=left, part=part, extra=join)}


def check(tmp_path: Path, bad: dict[str, str], good: dict[str, str], file: str, obj: str,
          field: str, problem: str, fix: str) -> None:
    report = compile_files(tmp_path / "bad", bad)
    p = one_error(report, Stage.CONSISTENCY)
    start = "scoring =" if file == JOIN_FILE else "user_profile ="
    assert (p.file, p.line) == (file, line_of(tmp_path / "bad" / "repo", file, start))
    assert (p.definition, p.field) == (obj, field)
    assert problem in p.problem, p.problem
    assert fix in p.fix, p.fix
    passing = compile_files(tmp_path / "good", good)
    assert passing.ok, [e.render() for e in passing.errors]


def test_online_join_uses_only_online_group_bys(tmp_path: Path) -> None:
    offline = repo() | {GB_FILE: GROUP.replace("online=True,", "").replace("{extra}", "")}
    check(tmp_path, offline, repo(), JOIN_FILE, JOIN_OBJECT, "right_parts[0].group_by",
          "a online join uses 'risk.users.user_profile', which is not online",
          "set online=True on risk.users.user_profile (group_bys/risk/users.py:3)")


def test_production_join_uses_only_production_group_bys(tmp_path: Path) -> None:
    check(tmp_path, repo(join="production=True,"),
          repo(group="production=True,", join="production=True,"),
          JOIN_FILE, JOIN_OBJECT, "right_parts[0].group_by",
          "a production join uses 'risk.users.user_profile', which is not production",
          "or production=False on the join")


def test_key_mapping_names_an_existing_left_column(tmp_path: Path) -> None:
    check(tmp_path, repo(part='key_mapping={"uid": "user_id"}'),
          repo(left='{"uid": "int64"}', part='key_mapping={"uid": "user_id"}'),
          JOIN_FILE, JOIN_OBJECT, "right_parts[0].key_mapping.uid",
          "the left has no column 'uid'", "map one of user_id")


def test_key_mapping_names_an_existing_group_key(tmp_path: Path) -> None:
    check(tmp_path, repo(left='{"uid": "int64"}', part='key_mapping={"uid": "id"}'),
          repo(left='{"uid": "int64"}', part='key_mapping={"uid": "user_id"}'),
          JOIN_FILE, JOIN_OBJECT, "right_parts[0].key_mapping.uid",
          "'risk.users.user_profile' has no key 'id'", "map to one of user_id")


def test_key_mapping_types_match(tmp_path: Path) -> None:
    check(tmp_path, repo(left='{"uid": "string"}', part='key_mapping={"uid": "user_id"}'),
          repo(left='{"uid": "int64"}', part='key_mapping={"uid": "user_id"}'),
          JOIN_FILE, JOIN_OBJECT, "right_parts[0].key_mapping.uid",
          "left 'uid' is string but key 'user_id' of 'risk.users.user_profile' is int64",
          "map columns of the same type")


def test_every_group_key_is_fed(tmp_path: Path) -> None:
    check(tmp_path, repo(left='{"account": "int64"}'),
          repo(left='{"account": "int64"}', part='key_mapping={"account": "user_id"}'),
          JOIN_FILE, JOIN_OBJECT, "right_parts[0].key_mapping",
          "key 'user_id' of 'risk.users.user_profile' is not fed: the left has no 'user_id'",
          'key_mapping={"<left key>": "user_id"}')


def test_an_unmapped_key_has_the_type_of_the_left_column(tmp_path: Path) -> None:
    check(tmp_path, repo(left='{"user_id": "string"}'), repo(),
          JOIN_FILE, JOIN_OBJECT, "right_parts[0].key_mapping",
          "key 'user_id' of 'risk.users.user_profile' is int64 but the left's 'user_id' is string",
          "map it from a left column of the same type")


ENTITY_LEFT = ('EntitySource(snapshot_table="dim.users", query=Query(selects=["user_id"]), '
               'columns={"user_id": "int64"})')
STREAM_LEFT = ('EventSource(table="events.checkouts", topic="checkouts", '
               'query=Query(selects=["user_id"], time_column="ts"), columns={"user_id": "int64"})')


def test_temporal_group_by_in_a_snapshot_only_join(tmp_path: Path) -> None:
    check(tmp_path, repo(group="accuracy=Accuracy.TEMPORAL,", left=ENTITY_LEFT),
          repo(group="accuracy=Accuracy.SNAPSHOT,", left=ENTITY_LEFT),
          JOIN_FILE, JOIN_OBJECT, "right_parts[0].group_by",
          "temporal semantics mismatch: 'risk.users.user_profile' is TEMPORAL but the left has "
          "no event time", "set accuracy=Accuracy.SNAPSHOT on risk.users.user_profile")


def test_snapshot_group_by_in_a_streaming_join(tmp_path: Path) -> None:
    check(tmp_path, repo(left=STREAM_LEFT),
          repo(group="accuracy=Accuracy.TEMPORAL,", left=STREAM_LEFT),
          JOIN_FILE, JOIN_OBJECT, "right_parts[0].group_by",
          "temporal semantics mismatch: 'risk.users.user_profile' is SNAPSHOT but the left is a "
          "stream", "set accuracy=Accuracy.TEMPORAL on risk.users.user_profile")


def test_request_keys_take_either_accuracy(tmp_path: Path) -> None:
    assert compile_files(tmp_path, repo(group="accuracy=Accuracy.TEMPORAL,")).ok


def test_temporal_accuracy_needs_event_times(tmp_path: Path) -> None:
    no_time = GROUP.replace(', time_column="ts"', "")
    bad = {GB_FILE: no_time.replace("{extra}", "accuracy=Accuracy.TEMPORAL,")}
    good = {GB_FILE: GROUP.replace("{extra}", "accuracy=Accuracy.TEMPORAL,")}
    check(tmp_path, bad, good, GB_FILE, "risk.users.user_profile",
          "sources[0].query.time_column",
          "event times are needed for TEMPORAL accuracy, but the source has no time_column",
          "set query.time_column")


def test_ttl_shorter_than_the_longest_window(tmp_path: Path) -> None:
    aggs = ('aggregations=[Aggregation("amount", Operation.SUM, windows=["1d", "30d"])],'
            ' online=False, ttl="{ttl}",')
    bad = {GB_FILE: GROUP.replace("online=True,", "").replace("{extra}", aggs.format(ttl="7d"))}
    good = {GB_FILE: GROUP.replace("online=True,", "").replace("{extra}", aggs.format(ttl="30d"))}
    check(tmp_path, bad, good, GB_FILE, "risk.users.user_profile", "ttl",
          "ttl 7d is shorter than the longest window 30d", "set ttl to 30d or more")


def test_unused_request_key_is_a_warning(tmp_path: Path) -> None:
    report = compile_files(tmp_path, repo(left='{"user_id": "int64", "extra": "string"}'))
    assert report.ok
    assert [(w.stage, w.field) for w in report.warnings] == [(Stage.CONSISTENCY, "left.extra")]
    assert "feeds no group-by" in report.warnings[0].problem
