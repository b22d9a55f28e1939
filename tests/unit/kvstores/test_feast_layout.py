"""kvstores.feast_redis without a server: field names, Timestamp bytes, what a reply becomes."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from redis.exceptions import ResponseError

from fetcher.feast.proto.stored_row_pb2 import StoredRow
from kvstores import StoreError, open_store
from kvstores.feast_redis import (
    FeastRedisClusterStore,
    FeastRedisStore,
    _FeastLayout,
    feast_dataset,
    feature_field,
    timestamp_ms,
)


def test_field_names_are_what_feast_wrote() -> None:
    # The field Feast 0.67.0 wrote for feature i32 of view typed.
    assert feature_field("typed", "i32") == b"\xf2\x1c1\x11"
    assert feast_dataset("v", ["a", "é"]) == '["v","a","é"]'
    with pytest.raises(ValueError, match="at least one feature"):
        feast_dataset("v", [])


@pytest.mark.parametrize(
    ("seconds", "nanos", "ms"),
    [(0, 0, 0), (1_796_173_348, 431_402_000, 1_796_173_348_431), (-1, 999_999_999, -1),
     (-62_135_596_800, 0, -62_135_596_800_000),
     (253_402_300_799, 999_999_999, 253_402_300_799_999)],
)  # fmt: skip
def test_timestamps(seconds: int, nanos: int, ms: int) -> None:
    assert timestamp_ms(Timestamp(seconds=seconds, nanos=nanos).SerializeToString()) == ms


@pytest.mark.parametrize("data", [b"\x08", b"\x08\xff", b"\x18\x01", b"\x08" + b"\xff" * 11])
def test_bytes_that_are_no_timestamp(data: bytes) -> None:
    with pytest.raises(ValueError):
        timestamp_ms(data)


def test_replies_become_stored_rows() -> None:
    layout = _FeastLayout()
    dataset = feast_dataset("v", ["a", "b"])
    ts = Timestamp(seconds=10, nanos=5_000_000).SerializeToString()
    lookups = [(dataset, b"k1", None), (dataset, b"k2", None), (dataset, b"k3", 9_000),
               (dataset, b"k4", None)]  # fmt: skip
    replies = [[ts, b" \x05", None], [None, None, None], [ts, b"", b""], [None, b" \x01", None]]
    found = layout.results(lookups, replies, lambda: "here")
    assert found[1] is None  # nothing of the view: not found
    assert found[2] is None  # newer than the time bound: Feast keeps no older version
    value, event_ms = found[0]  # type: ignore[misc]
    assert event_ms == 10_005
    row = StoredRow.FromString(value)
    assert [v.WhichOneof("val") for v in row.values] == ["int64_val", None]
    # The event time is beside the row, not in it (a row of doubles has a fixed size).
    assert not row.HasField("event_timestamp") and row.values[0].int64_val == 5
    value, event_ms = found[3]  # type: ignore[misc]
    assert event_ms == 0 and not StoredRow.FromString(value).HasField("event_timestamp")
    assert layout.commands(lookups[:1]) == [
        ("HMGET", b"k1", b"_ts:v", feature_field("v", "a"), feature_field("v", "b"))
    ]
    resp = layout.pack(lookups[:1])
    assert resp.startswith(b"*5\r\n$5\r\nHMGET\r\n$2\r\nk1\r\n$5\r\n_ts:v\r\n$4\r\n")


def test_bad_replies_and_datasets() -> None:
    layout = _FeastLayout()
    dataset = feast_dataset("v", ["a"])
    with pytest.raises(StoreError, match=r"_ts:v of b'k' is not a google\.protobuf\.Timestamp"):
        layout.results([(dataset, b"k", None)], [[b"\x18", None]], lambda: "here")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        layout.results([(dataset, b"k", None)], [ResponseError("WRONGTYPE x")], lambda: "here")
    with pytest.raises(ValueError, match="not a Feast dataset"):
        layout.pack([("users", b"k", None)])


async def test_urls_and_read_only() -> None:
    store = open_store("feast+redis://127.0.0.1:1/3?timeout_s=0.5&max_connections=4")
    assert isinstance(store, FeastRedisStore) and store.timeout_s == 0.5
    with pytest.raises(StoreError, match="read-only"):
        await store.multi_put([])
    with pytest.raises(StoreError, match="not a Feast dataset"):
        await store.multi_get([("users", b"k", None)])
    await store.close()
    cluster = open_store("feast+rediss+cluster://u:p@127.0.0.1:7001,127.0.0.1:7002")
    assert isinstance(cluster, FeastRedisClusterStore) and cluster.ssl
    assert cluster.username == "u" and len(cluster.nodes) == 2
    await cluster.close()
    with pytest.raises(ValueError, match="unknown option 'key_prefix'"):
        open_store("feast+redis://127.0.0.1:1/0?key_prefix=x")
