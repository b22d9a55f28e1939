"""A config with an aggregation group beside groups of stored rows loads into one serving
snapshot: the aggregation group is planned from its log, the others from their codecs."""

from __future__ import annotations

from pathlib import Path

from fetcher.server._reload import load_snapshot
from tests.unit.aggregation_support import NAME, demo_with_aggregation_group


def test_a_snapshot_plans_an_aggregation_group_from_the_catalog(tmp_path: Path) -> None:
    config = demo_with_aggregation_group(tmp_path / "cfg")
    snapshot = load_snapshot(str(config), ["main"])
    assert NAME not in snapshot.catalog.codecs
    [join] = snapshot.plans.groups[NAME].joins
    assert join.aggregate is not None and snapshot.plans.groups[NAME].has_aggregates
    assert snapshot.plans.groups[NAME].feature_names == ("amount_sum_1h", "amount_count_7d")
    [plain] = snapshot.plans.groups["user_profile"].joins
    assert plain.aggregate is None
    listing = snapshot.views.listing(NAME)
    assert listing is not None
    assert [f.name for f in listing.groups[0].features] == ["amount_sum_1h", "amount_count_7d"]
