"""Online group-bys with aggregations compile into aggregation groups: the catalog's file
(operations deduplicated per hop, the unbounded window apart), loaded back with
load_catalog; and stage 4's rules for them (layout changes, kind changes), `fetcher diff`."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from fetcher.aggregation import aggregator_for, tile_start
from fetcher.catalog import load_catalog
from fetcher.cli import main
from fetcher.compiler import CompileReport, Stage, compile_repo
from fetcher.types import (
    AggregateColumn,
    AggregateFeature,
    AggregateOperation,
    AggregationSpec,
    CachePolicy,
    FeatureType,
)
from tests.unit.compiler.repo_support import line_of, one_error, write_repo

FILE = "group_bys/risk/payments.py"
NAME = "risk.payments.payments"
H, D = 3_600_000, 86_400_000
AGGS = """[
        Aggregation("amount", Operation.SUM, windows=["30m", "1d", "7d", "30d"]),
        Aggregation("amount", Operation.SUM, windows=["2h", "12d"], name="spend"),
        Aggregation("count", Operation.SUM, windows=None),
        Aggregation("merchant", Operation.LAST_K, k=3, windows=["1d"]),
        Aggregation("merchant", Operation.LAST_K, k=5, windows=["1d"], name="merchant_last5"),
        Aggregation("amount", Operation.APPROX_PERCENTILE, percentiles=[0.5, 1], windows=["1d"]),
        Aggregation("amount", Operation.AVERAGE, windows=["12h"], tile="30m"),
        Aggregation("amount", Operation.AVERAGE, windows=None, tile="30m"),
        Aggregation("count", Operation.MAX, windows=["7d"]),
    ]"""
PAYMENTS = """
payments = GroupBy(
    keys=["user_id"],
    sources=[EventSource(
        table="events.payments",
        query=Query(selects=["user_id", "merchant", "amount", "count", "unused"],
                    time_column="ts"),
        columns={"user_id": "int64", "amount": "double", "count": "int32",
                 "merchant": "string", "unused": "bool"},
    )],
    aggregations=AGGS,
    ttl="30d",
    online=True,EXTRA
)
"""


def payments(aggs: str = AGGS, extra: str = "") -> str:
    """The group-by file with its aggregations and extra fields replaced."""
    return PAYMENTS.replace("AGGS", aggs).replace("EXTRA", extra)


def _ok(report: CompileReport) -> None:
    assert report.ok, [p.render() for p in report.errors]


def _compile(tmp_path: Path, text: str, folder: str = "repo", **kwargs: Any) -> CompileReport:
    repo = write_repo(tmp_path / folder, {FILE: text})
    kwargs.setdefault("out", tmp_path / "out")
    return compile_repo(repo, **kwargs)


def test_an_online_group_by_compiles_into_an_aggregation_group(tmp_path: Path) -> None:
    report = _compile(tmp_path, payments())
    _ok(report)
    assert not report.warnings
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "groups").iterdir()) == [f"{NAME}.json"]  # no .avsc
    group = load_catalog(out).groups[NAME]
    assert group.schema is None and group.max_age_s is None and group.ttl_s == 30 * 86400
    assert group.cache == CachePolicy(l1=False, l2=False)
    assert group.aggregation == AggregationSpec(
        # the used columns, in select order (unused is not an input)
        columns=(AggregateColumn("merchant", "string"), AggregateColumn("amount", "double"),
                 AggregateColumn("count", "int32")),
        operations=(
            AggregateOperation("amount", "sum", 300_000, 7_200_000),  # 30m, and spend_2h
            AggregateOperation("amount", "sum", H, 7 * D),  # 1d, 7d
            AggregateOperation("amount", "sum", D, 30 * D),  # 30d, and spend_12d
            AggregateOperation("count", "sum", D, None),  # unbounded: an operation of its own
            AggregateOperation("merchant", "last_k", H, D, k=3),
            AggregateOperation("merchant", "last_k", H, D, k=5),  # another k: another state
            AggregateOperation("amount", "approx_percentile", H, D, percentiles=(0.5, 1.0)),
            AggregateOperation("amount", "average", 1_800_000, 12 * H),  # the tile overrides
            AggregateOperation("amount", "average", 1_800_000, None),
            AggregateOperation("count", "max", H, 7 * D),
        ),
        features=(
            AggregateFeature("amount_sum_30m", 0, 1_800_000),
            AggregateFeature("amount_sum_1d", 1, D),
            AggregateFeature("amount_sum_7d", 1, 7 * D),
            AggregateFeature("amount_sum_30d", 2, 30 * D),
            AggregateFeature("spend_2h", 0, 2 * H),
            AggregateFeature("spend_12d", 2, 12 * D),
            AggregateFeature("count_sum", 3, None),
            AggregateFeature("merchant_last_k_1d", 4, D),
            AggregateFeature("merchant_last5_1d", 5, D),
            AggregateFeature("amount_approx_percentile_1d", 6, D),
            AggregateFeature("amount_average_12h", 7, 12 * H),
            AggregateFeature("amount_average", 8, None),
            AggregateFeature("count_max_7d", 9, 7 * D),
        ),
        max_events=10_000,
    )


def test_the_served_features_and_their_types(tmp_path: Path) -> None:
    aggs = AGGS.replace('Aggregation("merchant", Operation.LAST_K, k=5, windows=["1d"], '
                        'name="merchant_last5"),', "")
    _ok(_compile(tmp_path, payments(aggs)))
    group = load_catalog(tmp_path / "out").groups[NAME]
    assert [(f.name, f.type, f.nullable) for f in group.features] == [
        ("amount_sum_30m", FeatureType.DOUBLE, True), ("amount_sum_1d", FeatureType.DOUBLE, True),
        ("amount_sum_7d", FeatureType.DOUBLE, True), ("amount_sum_30d", FeatureType.DOUBLE, True),
        ("spend_2h", FeatureType.DOUBLE, True), ("spend_12d", FeatureType.DOUBLE, True),
        ("count_sum", FeatureType.INT64, True),  # a sum of int32 is an int64
        ("merchant_last_k_1d", FeatureType.STRING_LIST, True),
        ("amount_approx_percentile_1d", FeatureType.DOUBLE_LIST, True),
        ("amount_average_12h", FeatureType.DOUBLE, True),
        ("amount_average", FeatureType.DOUBLE, True),
        ("count_max_7d", FeatureType.INT64, True),  # int32 is served as INT64
    ]
    assert group.aggregation is not None
    assert [f.name for f in group.aggregation.features] == [f.name for f in group.features]


def test_the_output_is_deterministic_and_a_join_over_it_is_served(tmp_path: Path) -> None:
    join = """
from group_bys.risk.payments import payments

scoring = Join(left={"user_id": "int64"}, right_parts=[JoinPart(payments, prefix="p_")],
               online=True)
"""
    files = {FILE: payments(extra=' cache=Cache(l2=True, l2_ttl=5),'),
             "joins/risk/scoring.py": join}
    outputs = []
    for n in (1, 2):
        report = compile_repo(write_repo(tmp_path / f"repo{n}", files), tmp_path / f"out{n}")
        _ok(report)
        assert [(o.name, o.served) for o in report.objects] == [(NAME, True),
                                                                ("risk.scoring.scoring", True)]
        outputs.append({p.relative_to(tmp_path / f"out{n}"): p.read_bytes()
                        for p in sorted((tmp_path / f"out{n}").rglob("*")) if p.is_file()})
    assert outputs[0] == outputs[1]
    catalog = load_catalog(tmp_path / "out1")
    assert catalog.groups[NAME].cache == CachePolicy(l1=True, l2=True, l2_ttl_s=5)
    assert catalog.services["risk.scoring.scoring"].joins[0].group == NAME
    group_file = json.loads(outputs[0][Path(f"groups/{NAME}.json")])
    assert list(group_file) == ["name", "description", "store", "dataset", "keys",
                                "ttl_seconds", "online", "cache", "aggregations"]


def test_performance_counts_the_tiles_of_a_served_group(tmp_path: Path) -> None:
    report = _compile(tmp_path, payments(), out=None)
    _ok(report)
    assert report.performance is not None
    numbers = report.performance["group_bys"][NAME]
    assert numbers["tiles_per_window"]["30d"] == 30 and numbers["tiles_per_window"]["7d"] == 168
    assert report.performance["group_bys"][NAME]["tiles_read"] > 0


def test_an_offline_group_by_stays_in_the_metadata(tmp_path: Path) -> None:
    report = _compile(tmp_path, payments().replace("online=True,", "online=False,"))
    _ok(report)
    assert [o.served for o in report.objects] == [False]
    assert load_catalog(tmp_path / "out").groups == {}


class Sequence:
    """Compiles successive definitions into one output, each against the one before."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.n = 0

    def compile(self, text: str, **kwargs: Any) -> CompileReport:
        self.n += 1
        return _compile(self.tmp, text, f"v{self.n}", **kwargs)

    def version(self) -> str:
        manifest = json.loads((self.tmp / "out/metadata/version_manifest.json").read_text())
        return str(manifest["group_bys"][NAME]["version"])


RETILED = AGGS.replace('windows=["12h"], tile="30m"', 'windows=["12h"], tile="1h"')


def test_a_window_inside_the_spans_keeps_the_layout(tmp_path: Path) -> None:
    seq = Sequence(tmp_path)
    _ok(seq.compile(payments()))
    same = seq.compile(payments())
    _ok(same)
    assert not same.warnings and seq.version() == "1.0.0" and same.schema_changes == ()
    added = seq.compile(payments(AGGS.replace('"1d", "7d", "30d"]', '"1d", "3d", "7d", "30d"]')))
    _ok(added)
    assert not added.warnings
    assert seq.version() == "1.1.0"  # a feature added over a state already kept


def test_a_layout_change_is_a_warning_and_a_major_version(tmp_path: Path) -> None:
    seq = Sequence(tmp_path)
    _ok(seq.compile(payments()))
    report = seq.compile(payments(RETILED))
    _ok(report)
    [warning] = report.warnings
    assert (warning.stage, warning.field, warning.file) == (Stage.EVOLUTION, "aggregations", FILE)
    assert warning.line == line_of(tmp_path / "v2", FILE, "payments =")
    assert ("the aggregation layout changed since the previous output (- operation "
            "average(amount) hop 30m span 12h; + operation average(amount) hop 1h span 12h)"
            in warning.problem)
    assert "read by position" in warning.problem
    assert "rerun the batch job" in warning.fix
    assert 'name="risk.payments.payments_v2"' in warning.fix
    assert seq.version() == "2.0.0"
    assert report.schema_changes == ({
        "kind": "group_by", "name": NAME, "status": "changed", "bump": "major",
        "reason": "aggregation operations changed (the stored batch parts are read by them)",
        "from_version": "1.0.0", "to_version": "2.0.0"},)
    strict = seq.compile(payments(), strict=True)
    assert [(p.stage, p.field) for p in strict.errors] == [(Stage.EVOLUTION, "aggregations")]


def test_a_new_column_changes_the_layout_of_events(tmp_path: Path) -> None:
    seq = Sequence(tmp_path)
    _ok(seq.compile(payments()))
    more = AGGS.replace("    ]", '    Aggregation("unused", Operation.COUNT, windows=["1d"]),\n'
                                '    ]')
    report = seq.compile(payments(more))
    _ok(report)
    [warning] = report.warnings
    assert "+ column unused: bool; + operation count(unused) hop 1h span 1d" in warning.problem
    assert report.schema_changes is not None
    assert report.schema_changes[0]["reason"] == (
        "aggregation columns and operations changed (the stored events and batch parts are "
        "read by them); feature(s) 'unused_count_1d' added")


def test_an_online_production_layout_change_needs_a_version_or_force(tmp_path: Path) -> None:
    seq = Sequence(tmp_path)
    _ok(seq.compile(payments(extra=" production=True,")))
    refused = seq.compile(payments(RETILED, " production=True,"))
    problem = one_error(refused, Stage.EVOLUTION)
    assert problem.field == "version"
    assert "changed without a version bump (major change since 1.0.0: aggregation operations " \
           "changed" in problem.problem
    assert 'version="2.0.0"' in problem.fix and "--force" in problem.fix
    assert [w.field for w in refused.warnings] == ["aggregations"]
    assert seq.version() == "1.0.0"  # nothing written
    _ok(seq.compile(payments(RETILED, ' production=True, version="2",')))
    assert seq.version() == "2.0.0"
    forced = seq.compile(payments(extra=" production=True,"), force=True)
    _ok(forced)
    assert seq.version() == "3.0.0"


PLAIN = """
payments = GroupBy(
    keys=["user_id"],
    sources=[EventSource(
        table="events.payments",
        query=Query(selects=["user_id", "amount"], time_column="ts"),
        columns={"user_id": "int64", "amount": "double"},
    )],
    ttl="30d",
    online=True,
)
"""


@pytest.mark.parametrize(("first", "then", "was"), [
    (PLAIN, payments(), "as a group of stored rows: its dataset holds rows"),
    (payments(), PLAIN, "as an aggregation group: its dataset holds a log"),
], ids=["rows to aggregations", "aggregations to rows"])
def test_a_group_that_changes_kind_needs_a_new_name(tmp_path: Path, first: str, then: str,
                                                    was: str) -> None:
    seq = Sequence(tmp_path)
    _ok(seq.compile(first))
    problem = one_error(seq.compile(then), Stage.EVOLUTION)
    assert problem.field == "aggregations"
    assert f"the previous output serves {NAME!r} {was}" in problem.problem
    assert problem.fix.startswith('Give the GroupBy a new name, e.g. '
                                  'name="risk.payments.payments_v2"')
    renamed = seq.compile(then.replace("online=True,", 'online=True, name="payments_v2",'))
    _ok(renamed)


def test_diff_shows_the_layout_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _ok(_compile(tmp_path, payments(), "a", out=tmp_path / "a_out"))
    _ok(_compile(tmp_path, payments(RETILED), "b", out=tmp_path / "b_out"))
    a, b = str(tmp_path / "a_out"), str(tmp_path / "b_out")
    assert main(["diff", "--from", a, "--to", b]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"group_by {NAME}: major (1.0.0 -> 1.0.0)",
        "  - operation average(amount) hop 30m span 12h",
        "  + operation average(amount) hop 1h span 12h",
        "0 added, 0 removed, 1 changed, 0 unchanged",
    ]
    assert main(["diff", "--from", a, "--to", b, "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)["objects"]
    assert entry["aggregation_layout"] == ["- operation average(amount) hop 30m span 12h",
                                           "+ operation average(amount) hop 1h span 12h"]
    assert entry["bump"] == "major"


def test_diff_of_a_kind_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _ok(_compile(tmp_path, PLAIN, "a", out=tmp_path / "a_out"))
    _ok(_compile(tmp_path, payments(), "b", out=tmp_path / "b_out"))
    assert main(["diff", "--from", str(tmp_path / "a_out"), "--to", str(tmp_path / "b_out"),
                 "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)["objects"]
    assert entry["aggregation_layout"] == [
        "now an aggregation group (was a group of stored rows)"]


def test_the_compiled_spec_serves_every_window_from_a_batch_part(tmp_path: Path) -> None:
    """Oracle: the serving core over the compiled spec (batch part + later events) gives
    every feature the sum/count/max of exactly the events its window covers."""
    aggs = """[
        Aggregation("amount", Operation.SUM, windows=["30m", "1d", "7d"]),
        Aggregation("amount", Operation.COUNT, windows=None),
        Aggregation("count", Operation.MAX, windows=["2h", "3d"], tile="1h"),
    ]"""
    _ok(_compile(tmp_path, payments(aggs)))
    spec = load_catalog(tmp_path / "out").groups[NAME].aggregation
    assert spec is not None
    aggregator = aggregator_for(spec)
    rng = random.Random(14)
    day = 86_400_000
    events = sorted((rng.randrange(20 * day, 30 * day), rng.randrange(100), rng.randrange(50))
                    for _ in range(400))
    end = 27 * day + 12_345
    rows = [(ts, aggregator.codec.values({"amount": float(a), "count": c}))
            for ts, a, c in events]
    batch = aggregator.batch_part([r for r in rows if r[0] < end], end)
    after = [(ts, f"e{i}".encode(), aggregator.codec.encode(v))
             for i, (ts, v) in enumerate(rows) if ts >= end][::-1]  # a read is newest first
    for at in [end, end + 1, end + 3_600_000, end + day, *(rng.randrange(end, 31 * day)
                                                          for _ in range(30))]:
        got = aggregator.compute((end, batch), after, at)
        assert got is not None
        for feature, value in zip(spec.features, got.values, strict=True):
            op = spec.operations[feature.operation]
            start = (0 if feature.window_ms is None
                     else tile_start(max(at - feature.window_ms, 0), op.hop_ms))
            covered = [(a, c) for ts, a, c in events if start <= ts < at]
            want: Any = {"sum": float(sum(a for a, _ in covered)) if covered else None,
                         "count": len(covered),
                         "max": max((c for _, c in covered), default=None)}[op.operation]
            assert value == want, (feature.name, at)
