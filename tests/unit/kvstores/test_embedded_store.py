"""EmbeddedStore on temp dirs: byte layout, version bounds, expiry, validation, errors."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvstores import EmbeddedStore, Row, StoreError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path / "s.lmdb", map_size=16 << 20)
    yield store
    await store.close()


def raw_items(store: EmbeddedStore) -> list[tuple[bytes, bytes]]:
    # Through the store's own environment: LMDB refuses a second open in one process.
    with store._env.begin() as txn:
        return [(bytes(k), bytes(v)) for k, v in txn.cursor()]


async def test_layout_is_the_documented_bytes(store: EmbeddedStore) -> None:
    await store.multi_put([Row("users", b"\x00\x07", b"val", 1_700_000_000_000)])
    ((key, value),) = raw_items(store)
    assert key == (
        b"\x05users" + b"\x00\x02" + b"\x00\x07"
        + struct.pack(">Q", 2**63 - 1 - 1_700_000_000_000)
    )  # fmt: skip
    assert value == b"\x00" * 8 + b"val"  # expiry 0: never


async def test_written_by_hand_per_docs_is_read(tmp_path: Path) -> None:
    # A Spark/Flink-style writer that only follows docs/storage-layout.md.
    path = tmp_path / "hand.lmdb"
    env = lmdb.open(str(path), map_size=16 << 20)
    prefix = bytes([2]) + b"ds" + struct.pack(">H", 3) + b"abc"
    with env.begin(write=True) as txn:
        for ts, val in ((10, b"ten"), (20, b"twenty")):
            txn.put(prefix + struct.pack(">Q", 2**63 - 1 - ts), struct.pack(">Q", 0) + val)
    env.close()
    store = EmbeddedStore(path, readonly=True)
    got = await store.multi_get([("ds", b"abc", None), ("ds", b"abc", 15), ("ds", b"abc", 9)])
    assert got == [(b"twenty", 20), (b"ten", 10), None]
    await store.close()


async def test_versions_sort_newest_first_over_the_whole_int64_range(store: EmbeddedStore) -> None:
    times = [INT64_MIN, -1, 0, 1, 2**40, INT64_MAX]
    await store.multi_put([Row("d", b"k", b"%d" % t, t) for t in times])
    stored = [k for k, _ in raw_items(store)]
    decoded = [INT64_MAX - struct.unpack(">Q", k[-8:])[0] for k in stored]
    assert decoded == sorted(times, reverse=True)
    got = await store.multi_get([("d", b"k", t) for t in times] + [("d", b"k", None)])
    assert got == [(b"%d" % t, t) for t in times] + [(b"%d" % INT64_MAX, INT64_MAX)]


async def test_lookup_times_outside_int64_are_clamped(store: EmbeddedStore) -> None:
    await store.multi_put([Row("d", b"k", b"v", 5)])
    got = await store.multi_get([("d", b"k", 2**70), ("d", b"k", -(2**70))])
    assert got == [(b"v", 5), None]


async def test_keys_of_neighbouring_entities_do_not_leak(store: EmbeddedStore) -> None:
    # b"a" has no version at or before 5, but b"a\x00" and dataset "d2" do:
    # the seek lands on them and the prefix check must reject them.
    await store.multi_put(
        [Row("d", b"a", b"a", 10), Row("d", b"a\x00", b"a0", 1), Row("d2", b"a", b"d2", 1)]
    )
    assert await store.multi_get([("d", b"a", 5), ("d", b"", None)]) == [None, None]


async def test_max_versions_keeps_the_newest(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "v.lmdb", map_size=16 << 20, max_versions=3)
    await store.multi_put([Row("d", b"k", b"%d" % t, t) for t in range(1, 8)])
    await store.multi_put([Row("d", b"other", b"o", 1)])
    await store.multi_put([Row("d", b"k", b"old", 0)])  # older than all kept: trimmed at once
    assert len(raw_items(store)) == 4
    got = await store.multi_get([("d", b"k", None), ("d", b"k", 5), ("d", b"k", 4), ("d", b"k", 0)])
    assert got == [(b"7", 7), (b"5", 5), None, None]
    assert await store.multi_get([("d", b"other", None)]) == [(b"o", 1)]
    await store.close()


async def test_unbounded_versions(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "u.lmdb", map_size=16 << 20, max_versions=None)
    await store.multi_put([Row("d", b"k", b"%d" % t, t) for t in range(100)])
    assert await store.multi_get([("d", b"k", 0)]) == [(b"0", 0)]
    await store.close()


async def test_expired_newest_falls_back_to_older_live_version(store: EmbeddedStore) -> None:
    await store.multi_put([Row("d", b"k", b"old", 1), Row("d", b"k", b"new", 2, ttl_s=1)])
    assert await store.multi_get([("d", b"k", None)]) == [(b"new", 2)]
    expiry = struct.unpack(">Q", raw_items(store)[0][1][:8])[0]
    assert expiry > 0
    await asyncio.sleep(1.2)
    assert await store.multi_get([("d", b"k", None)]) == [(b"old", 1)]
    assert await store.purge_expired() == 1
    assert await store.purge_expired() == 0
    assert len(raw_items(store)) == 1


async def test_dataset_and_key_validation(store: EmbeddedStore) -> None:
    with pytest.raises(ValueError, match=r"1\.\.255"):
        await store.multi_get([("", b"k", None)])
    with pytest.raises(ValueError, match=r"1\.\.255"):
        await store.multi_put([Row("x" * 256, b"k", b"v", 1)])
    with pytest.raises(ValueError, match="too long for LMDB"):
        await store.multi_get([("d", b"k" * 600, None)])
    with pytest.raises(ValueError, match="at most 65535"):
        await store.multi_put([Row("d", b"k" * 70_000, b"v", 1)])
    with pytest.raises(ValueError, match="not int64"):
        await store.multi_put([Row("d", b"k", b"v", 2**63)])
    # A bad row anywhere in the batch means nothing is written.
    with pytest.raises(ValueError):
        await store.multi_put([Row("d", b"ok", b"v", 1), Row("", b"k", b"v", 1)])
    assert await store.multi_get([("d", b"ok", None)]) == [None]


async def test_longest_key_that_fits(store: EmbeddedStore) -> None:
    longest = b"k" * (511 - 11 - 1)  # LMDB's 511-byte key cap, 11 framing bytes, dataset "d"
    await store.multi_put([Row("d", longest, b"v", 1)])
    assert await store.multi_get([("d", longest, None)]) == [(b"v", 1)]


async def test_readonly_store(store: EmbeddedStore, tmp_path: Path) -> None:
    await store.multi_put([Row("d", b"k", b"v", 1)])
    await store.close()  # one open environment per path per process
    reader = EmbeddedStore(tmp_path / "s.lmdb", readonly=True)
    assert await reader.multi_get([("d", b"k", None)]) == [(b"v", 1)]
    with pytest.raises(StoreError, match="readonly"):
        await reader.multi_put([Row("d", b"k", b"v", 2)])
    await reader.ping()
    await reader.close()


def test_readonly_store_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open embedded store"):
        EmbeddedStore(tmp_path / "missing.lmdb", readonly=True)


async def test_full_map_is_a_store_error(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "tiny.lmdb", map_size=1 << 20, max_versions=None)
    with pytest.raises(StoreError, match="map_size") as info:
        await store.multi_put([Row("d", b"%d" % i, b"x" * 1000, 1) for i in range(5000)])
    assert isinstance(info.value.__cause__, lmdb.MapFullError)
    await store.close()


async def test_closed_store(store: EmbeddedStore) -> None:
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.ping()
    with pytest.raises(StoreError, match="closed"):
        await store.multi_put([Row("d", b"k", b"v", 1)])


async def test_concurrent_writes_all_land(store: EmbeddedStore) -> None:
    batches = [[Row("d", b"%d-%d" % (b, i), b"v", 1) for i in range(100)] for b in range(8)]
    await asyncio.gather(*(store.multi_put(batch) for batch in batches))
    lookups = [("d", b"%d-%d" % (b, i), None) for b in range(8) for i in range(100)]
    assert await store.multi_get(lookups) == [(b"v", 1)] * 800


def test_constructor_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_versions"):
        EmbeddedStore(tmp_path / "x", max_versions=0)
    with pytest.raises(ValueError, match="map_size"):
        EmbeddedStore(tmp_path / "x", map_size=1000)


async def test_a_long_key_after_short_ones_of_its_dataset_is_still_refused(
    store: EmbeddedStore,
) -> None:
    # The read path remembers each dataset's longest key: the check must still hold.
    assert await store.multi_get([("d", b"k", None)]) == [None]
    with pytest.raises(ValueError, match="too long for LMDB"):
        await store.multi_get([("d", b"k" * 600, None)])
    with pytest.raises(ValueError, match="at most 65535"):
        await store.multi_put([Row("d", b"k" * 70_000, b"v", 1)])


_VERSION = st.tuples(
    st.sampled_from(["a", "bb"]), st.sampled_from([b"", b"k", b"k2", b"k\x00"]),
    st.integers(-5, 5),  # event time
    st.sampled_from(["never", "expired", "live"]),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    versions=st.lists(_VERSION, max_size=12),
    ats=st.lists(st.one_of(st.none(), st.integers(-7, 7), st.just(INT64_MIN - 1),
                           st.just(INT64_MAX + 1)), min_size=1, max_size=6),
)  # fmt: skip
def test_reads_equal_a_model_of_versions_and_expiry(
    tmp_path_factory: pytest.TempPathFactory, versions: list[Any], ats: list[int | None]
) -> None:
    # Rows written by hand per docs/storage-layout.md, some expired; every lookup must
    # give the newest visible version at or before its time, as a plain model says.
    path = tmp_path_factory.mktemp("model") / "m.lmdb"
    now_ms = time.time_ns() // 1_000_000
    expiry = {"never": 0, "expired": now_ms - 60_000, "live": now_ms + 3_600_000}
    stored: dict[tuple[str, bytes, int], tuple[bytes, str]] = {}
    env = lmdb.open(str(path), map_size=16 << 20)
    with env.begin(write=True) as txn:
        for dataset, key, event_ms, kind in versions:
            value = f"{dataset}/{key!r}/{event_ms}/{kind}".encode()
            stored[(dataset, key, event_ms)] = (value, kind)
            prefix = bytes([len(dataset)]) + dataset.encode() + struct.pack(">H", len(key)) + key
            txn.put(prefix + struct.pack(">Q", INT64_MAX - event_ms),
                    struct.pack(">Q", expiry[kind]) + value)
    env.close()

    def model(dataset: str, key: bytes, at: int | None) -> tuple[bytes, int] | None:
        times = sorted((t for d, k, t in stored if (d, k) == (dataset, key)), reverse=True)
        for t in times:
            value, kind = stored[(dataset, key, t)]
            if (at is None or t <= at) and kind != "expired":
                return value, t
        return None

    lookups = [(d, k, at) for at in ats for d in ("a", "bb") for k in (b"k", b"", b"k\x00")]

    async def read() -> list[Any]:
        store = EmbeddedStore(path, readonly=True)
        try:
            return await store.multi_get(lookups)
        finally:
            await store.close()

    assert asyncio.run(read()) == [model(*lookup) for lookup in lookups]
