"""EmbeddedStore's aggregation log: the documented bytes, expiry, limits, its model.

The contract every store passes is tests/integration/log_contract.py (it runs on this
store too); here what only the LMDB layout decides.
"""

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

from kvstores import EMPTY_LOG, MAX_LOG_ID, EmbeddedStore, LogEntry, LogRead, Row, StoreError
from tests.log_model import MAX_TS, TRICKY_IDS, Written, model_read


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path / "s.lmdb", map_size=16 << 20)
    yield store
    await store.close()


def raw_items(store: EmbeddedStore) -> list[tuple[bytes, bytes]]:
    with store._env.begin() as txn:
        return [(bytes(k), bytes(v)) for k, v in txn.cursor()]


def log_key(dataset: str, key: bytes, ts: int, id: bytes) -> bytes:
    # docs/storage-layout.md, "the log", embedded.
    ds = dataset.encode()
    return b"\x00" + bytes([len(ds)]) + ds + struct.pack(">H", len(key)) + key + struct.pack(
        ">Q", ts
    ) + id


async def test_layout_is_the_documented_bytes(store: EmbeddedStore) -> None:
    before = time.time_ns() // 1_000_000
    await store.append_log([
        LogEntry("clicks", b"\x00\x07", 1_700_000_000_000, b"ev", b"pay"),
        LogEntry("clicks", b"\x00\x07", 5, b"", b"part", ttl_s=60),
    ])  # fmt: skip
    (part_key, part_value), (event_key, event_value) = raw_items(store)
    assert event_key == log_key("clicks", b"\x00\x07", 1_700_000_000_000, b"ev")
    assert event_value == b"\x00" * 8 + b"pay"  # expiry 0: never
    assert part_key == b"\x00\x06clicks\x00\x02\x00\x07" + struct.pack(">Q", 5)
    expires_ms = struct.unpack(">Q", part_value[:8])[0]
    assert before + 60_000 <= expires_ms <= time.time_ns() // 1_000_000 + 60_000
    assert part_value[8:] == b"part"


async def test_logs_and_versions_of_one_key_live_side_by_side(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.lmdb", map_size=16 << 20, max_versions=1)
    await store.append_log([LogEntry("d", b"k", ts, b"e", b"%d" % ts) for ts in range(5)])
    await store.multi_put([Row("d", b"k", b"v%d" % ts, ts) for ts in range(3)])
    await store.multi_put([Row("d", b"k\x00", b"other", 9)])
    # Trimming versions to one leaves the log alone, and reads never mix the two.
    assert await store.multi_get([("d", b"k", None), ("d", b"k", 1)]) == [(b"v2", 2), None]
    (read,) = await store.read_logs([("d", b"k", 0, MAX_TS, 10)])
    assert read == LogRead(None, [(ts, b"e", b"%d" % ts) for ts in range(4, -1, -1)], False)
    assert await store.read_logs([("d", b"k\x00", 0, MAX_TS, 10)]) == [EMPTY_LOG]
    await store.close()


async def test_expired_entries_are_skipped_then_purged(store: EmbeddedStore) -> None:
    await store.append_log([
        LogEntry("d", b"k", 1, b"", b"old part"),
        LogEntry("d", b"k", 2, b"", b"new part", ttl_s=1),
        LogEntry("d", b"k", 3, b"e", b"short", ttl_s=1),
        LogEntry("d", b"k", 4, b"e", b"stays"),
    ])  # fmt: skip
    await asyncio.sleep(1.2)
    # The expired batch part is invisible: the scan goes on to the older one.
    got = await store.read_logs([("d", b"k", 0, 10, 10)])
    assert got == [LogRead((1, b"old part"), [(4, b"e", b"stays")], False)]
    assert await store.purge_expired() == 2
    assert len(raw_items(store)) == 2


async def test_keys_too_long_for_lmdb_are_refused(store: EmbeddedStore) -> None:
    # 511-byte keys: 12 framing bytes, dataset "d", so entity key + id <= 498 bytes.
    longest = b"k" * (511 - 12 - 1 - MAX_LOG_ID)
    entry = LogEntry("d", longest, 1, b"i" * MAX_LOG_ID, b"p")
    await store.append_log([entry])
    assert await store.read_logs([("d", longest, 0, 9, 9)]) == [
        LogRead(None, [(1, entry.id, b"p")], False)
    ]
    with pytest.raises(ValueError, match="too long for an LMDB log key"):
        await store.append_log([LogEntry("d", longest + b"k", 1, b"i" * MAX_LOG_ID, b"p")])
    with pytest.raises(ValueError, match="too long for an LMDB log key"):
        await store.read_logs([("d", b"k" * 600, 0, 9, 9)])
    with pytest.raises(ValueError, match="at most 65535"):
        await store.read_logs([("d", b"k" * 70_000, 0, 9, 9)])


async def test_readonly_store_reads_logs_and_refuses_writes(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    await store.append_log([LogEntry("d", b"k", 1, b"e", b"p")])
    await store.close()
    reader = EmbeddedStore(tmp_path / "s.lmdb", readonly=True)
    assert await reader.read_logs([("d", b"k", 0, 9, 9)]) == [
        LogRead(None, [(1, b"e", b"p")], False)
    ]
    with pytest.raises(StoreError, match="readonly"):
        await reader.append_log([LogEntry("d", b"k", 2, b"e", b"p")])
    await reader.close()


_ENTRY = st.tuples(
    st.sampled_from(["a", "bb"]),
    st.sampled_from([b"", b"k", b"k\x00"]),
    st.one_of(st.integers(0, 6), st.just(MAX_TS)),  # ts_ms
    st.one_of(st.just(b""), st.sampled_from(TRICKY_IDS), st.binary(max_size=3)),
    st.binary(max_size=3),  # payload
    st.sampled_from(["never", "expired", "live"]),
)
_LOOKUP = st.tuples(
    st.sampled_from(["a", "bb"]),
    st.sampled_from([b"", b"k", b"k\x00", b"missing"]),
    st.one_of(st.integers(-2, 7), st.just(-(2**70))),
    st.one_of(st.integers(-1, 8), st.just(MAX_TS), st.just(2**70)),
    st.integers(0, 5),
)


@settings(max_examples=80, deadline=None)
@given(entries=st.lists(_ENTRY, max_size=20), lookups=st.lists(_LOOKUP, min_size=1, max_size=8))
def test_reads_equal_a_model_of_hand_written_entries(
    tmp_path_factory: pytest.TempPathFactory, entries: list[Any], lookups: list[Any]
) -> None:
    # Entries written by hand per docs/storage-layout.md, some expired: every read must be
    # what the docs' rule gives over the live ones.
    path = tmp_path_factory.mktemp("model") / "m.lmdb"
    now_ms = time.time_ns() // 1_000_000
    expiry = {"never": 0, "expired": now_ms - 60_000, "live": now_ms + 3_600_000}
    stored: dict[tuple[str, bytes, int, bytes], tuple[bytes, str]] = {}
    for dataset, key, ts, id, payload, kind in entries:
        stored[(dataset, key, ts, id)] = (payload, kind)
    env = lmdb.open(str(path), map_size=16 << 20)
    with env.begin(write=True) as txn:
        for (dataset, key, ts, id), (payload, kind) in stored.items():
            txn.put(log_key(dataset, key, ts, id), struct.pack(">Q", expiry[kind]) + payload)
    env.close()
    live: Written = {k: payload for k, (payload, kind) in stored.items() if kind != "expired"}

    async def read() -> list[LogRead]:
        store = EmbeddedStore(path, readonly=True)
        try:
            return await store.read_logs(lookups)
        finally:
            await store.close()

    assert asyncio.run(read()) == [model_read(live, lookup) for lookup in lookups]
