"""The sampling rule: the documented one (an independent implementation), pinned values,
bounds, and that a higher percent keeps a superset."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.featurelog import BUCKETS, Sampler, sample_bucket, sample_threshold
from fetcher.types import KeyColumn, KeyType
from tests.unit.featurelog.support import oracle_kept

KEYS = (KeyColumn("user_id", KeyType.INT64), KeyColumn("place_id", KeyType.STRING),
        KeyColumn("token", KeyType.BYTES))
TYPES = ("int64", "string", "bytes")


@settings(max_examples=300, deadline=None)
@given(
    user=st.integers(-(2**63), 2**63 - 1),
    place=st.text(max_size=20),
    token=st.binary(max_size=20),
    percent=st.floats(0, 100),
)
def test_the_sampler_is_the_documented_rule(user: int, place: str, token: bytes,
                                            percent: float) -> None:
    values = [user, place, token]
    want = oracle_kept("svc", list(zip(TYPES, values, strict=True)), percent)
    assert Sampler("svc", KEYS, percent).selected(values) is want


def test_pinned_buckets() -> None:
    # Other systems reproduce these: docs/operations.md, "Feature log".
    assert sample_bucket("user_merchant", bytes.fromhex("000000000000002a0000000000000007")) \
        == 189078
    assert sample_bucket("user_place", bytes.fromhex("0000000000000001") + b"\0\0\0\x03abc") \
        == 442720


def test_thresholds() -> None:
    assert sample_threshold(0) == 0 and sample_threshold(100) == BUCKETS
    assert sample_threshold(50) == 500_000 and sample_threshold(0.29) == 2_900
    assert sample_threshold(12.3456) == 123_456  # the percent's resolution: 0.0001
    assert Sampler("s", KEYS[:1], 0).none and Sampler("s", KEYS[:1], 100).all
    assert not Sampler("s", KEYS[:1], 99.9999).all


def test_higher_percents_keep_supersets_and_the_share_is_about_right() -> None:
    rng = random.Random(7)
    users = [[rng.randrange(-(2**63), 2**63)] for _ in range(20_000)]
    kept = {p: {i for i, u in enumerate(users) if Sampler("svc", KEYS[:1], p).selected(u)}
            for p in (1, 10, 50, 90)}
    assert kept[1] <= kept[10] <= kept[50] <= kept[90]
    for p, chosen in kept.items():
        assert abs(len(chosen) / len(users) - p / 100) < 0.02, p


def test_the_service_name_is_part_of_the_hash() -> None:
    users = [[u] for u in range(2_000)]
    a = {u[0] for u in users if Sampler("a", KEYS[:1], 50).selected(u)}
    b = {u[0] for u in users if Sampler("b", KEYS[:1], 50).selected(u)}
    assert a != b
