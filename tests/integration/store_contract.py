"""The KVStore contract as a reusable test suite.

Subclass `StoreContract` in a `Test*` class and give it a `store` fixture that
yields a fresh, empty store of the backend under test; every test below then runs
against that backend (see test_store_contract.py).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from kvstores import KVStore, Row, StoreError

# Keys whose bytes are prefixes of one another, or of another key plus a length or
# time field: a layout that concatenates without framing would confuse them.
_TRICKY_KEYS = [b"", b"a", b"a\x00", b"a\x00\x00", b"\x00", b"\xff" * 8, b"{x}", b"}{", b":"]


class StoreContract:
    """Tests every KVStore must pass; subclasses provide the `store` fixture."""

    #: The short TTL the expiry test writes, and how long it waits for it to have passed
    #: (with slack for the stores' second granularity).
    ttl_s = 2
    ttl_wait_s = 3.2

    async def test_put_then_get(self, store: KVStore) -> None:
        await store.multi_put([Row("users", b"u1", b"value-1", 1_000)])
        assert await store.multi_get([("users", b"u1", None)]) == [(b"value-1", 1_000)]

    async def test_empty_batches(self, store: KVStore) -> None:
        await store.multi_put([])
        assert await store.multi_get([]) == []

    async def test_missing_keys_are_none(self, store: KVStore) -> None:
        await store.multi_put([Row("users", b"u1", b"v", 1_000)])
        got = await store.multi_get(
            [
                ("users", b"u2", None),
                ("users", b"u1", None),
                ("no-such-dataset", b"u1", None),
                ("users", b"u", None),
                ("users", b"u11", 5_000),
            ]
        )
        assert got == [None, (b"v", 1_000), None, None, None]

    async def test_several_datasets_in_one_batch(self, store: KVStore) -> None:
        # The same key in different datasets is a different entity.
        await store.multi_put(
            [
                Row("users", b"k", b"user", 10),
                Row("merchants", b"k", b"merchant", 20),
                Row("users.v2", b"k", b"user-v2", 30),
            ]
        )
        got = await store.multi_get(
            [("merchants", b"k", None), ("users", b"k", None), ("users.v2", b"k", None)]
        )
        assert got == [(b"merchant", 20), (b"user", 10), (b"user-v2", 30)]

    async def test_results_follow_lookup_order_with_duplicates(self, store: KVStore) -> None:
        await store.multi_put([Row("d", b"a", b"A", 1), Row("d", b"b", b"B", 2)])
        got = await store.multi_get(
            [("d", b"b", None), ("d", b"a", None), ("d", b"b", None), ("d", b"x", None)]
        )
        assert got == [(b"B", 2), (b"A", 1), (b"B", 2), None]

    async def test_point_in_time(self, store: KVStore) -> None:
        # Written out of order on purpose: the store orders by event time.
        await store.multi_put(
            [
                Row("d", b"k", b"v2000", 2_000),
                Row("d", b"k", b"v1000", 1_000),
                Row("d", b"k", b"v3000", 3_000),
            ]
        )
        got = await store.multi_get(
            [
                ("d", b"k", 999),  # before the first version
                ("d", b"k", 1_000),  # exactly at a version
                ("d", b"k", 1_500),  # between versions
                ("d", b"k", 2_999),
                ("d", b"k", 3_000),
                ("d", b"k", 10**12),  # after the last
                ("d", b"k", None),  # latest of all
            ]
        )
        assert got == [
            None,
            (b"v1000", 1_000),
            (b"v1000", 1_000),
            (b"v2000", 2_000),
            (b"v3000", 3_000),
            (b"v3000", 3_000),
            (b"v3000", 3_000),
        ]

    async def test_versions_written_in_separate_batches(self, store: KVStore) -> None:
        for ts in (100, 300, 200):
            await store.multi_put([Row("d", b"k", f"v{ts}".encode(), ts)])
        got = await store.multi_get([("d", b"k", None), ("d", b"k", 250), ("d", b"k", 150)])
        assert got == [(b"v300", 300), (b"v200", 200), (b"v100", 100)]

    async def test_zero_and_negative_event_times(self, store: KVStore) -> None:
        await store.multi_put([Row("d", b"k", b"epoch", 0), Row("d", b"k", b"before", -86_400_000)])
        got = await store.multi_get([("d", b"k", None), ("d", b"k", -1), ("d", b"k", -86_400_001)])
        assert got == [(b"epoch", 0), (b"before", -86_400_000), None]

    async def test_same_event_time_replaces(self, store: KVStore) -> None:
        await store.multi_put([Row("d", b"k", b"first", 1_000), Row("d", b"k", b"older", 500)])
        await store.multi_put([Row("d", b"k", b"second", 1_000)])
        got = await store.multi_get([("d", b"k", None), ("d", b"k", 999)])
        assert got == [(b"second", 1_000), (b"older", 500)]

    async def test_same_event_time_in_one_batch_last_wins(self, store: KVStore) -> None:
        await store.multi_put([Row("d", b"k", b"zz-first", 7), Row("d", b"k", b"aa-last", 7)])
        assert await store.multi_get([("d", b"k", None)]) == [(b"aa-last", 7)]

    async def test_ttl_expiry(self, store: KVStore) -> None:
        written = time.monotonic()
        await store.multi_put(
            [
                Row("d", b"short", b"gone soon", 1_000, ttl_s=self.ttl_s),
                Row("d", b"forever", b"stays", 1_000),
                Row("d", b"long", b"stays too", 1_000, ttl_s=3_600),
            ]
        )
        lookups = [("d", b"short", None), ("d", b"forever", None), ("d", b"long", None)]
        got = await store.multi_get(lookups)
        assert got[1:] == [(b"stays", 1_000), (b"stays too", 1_000)]
        # Read well within its TTL, the short row is there (on a machine so busy that the
        # read came later, it may rightly be gone: that is no failure of the store).
        if time.monotonic() - written < self.ttl_s - 0.5:
            assert got[0] == (b"gone soon", 1_000)
        await asyncio.sleep(self.ttl_wait_s)
        assert await store.multi_get(lookups) == [None, (b"stays", 1_000), (b"stays too", 1_000)]

    #: Rows of test_large_batch: many times every backend's batch limit (a backend whose
    #: test server is slow per row may take fewer).
    large_batch_rows = 5_000

    async def test_large_batch(self, store: KVStore) -> None:
        n = self.large_batch_rows
        rows = [Row("big", b"key-%05d" % i, b"value-%05d" % i, 1_000 + i) for i in range(n)]
        await store.multi_put(rows)
        # Every other lookup misses, to check results stay aligned with lookups.
        lookups = [("big", b"key-%05d" % (i // 2 if i % 2 == 0 else 10**6 + i), None)
                   for i in range(2 * n)]  # fmt: skip
        got = await store.multi_get(lookups)
        assert len(got) == 2 * n
        for i, found in enumerate(got):
            expected = (b"value-%05d" % (i // 2), 1_000 + i // 2) if i % 2 == 0 else None
            assert found == expected, i

    async def test_binary_keys(self, store: KVStore) -> None:
        single_bytes = [bytes((b,)) for b in range(256)]
        keys = [*single_bytes, bytes(range(256)), *_TRICKY_KEYS]
        keys = list(dict.fromkeys(keys))  # b"\x00" and b":" appear twice
        rows = [Row("bin", key, b"v" + key, 1 + i) for i, key in enumerate(keys)]
        await store.multi_put(rows)
        got = await store.multi_get([("bin", key, None) for key in keys])
        assert got == [(row.value, row.event_ms) for row in rows]

    async def test_binary_values(self, store: KVStore) -> None:
        values = [b"", bytes(range(256)) * 4, b"\x00" * 100_000]
        await store.multi_put([Row("d", b"k%d" % i, v, 5) for i, v in enumerate(values)])
        got = await store.multi_get([("d", b"k%d" % i, None) for i in range(len(values))])
        assert got == [(v, 5) for v in values]

    async def test_ping(self, store: KVStore) -> None:
        await store.ping()

    async def test_use_after_close_is_a_store_error(self, store: KVStore) -> None:
        # After close() the store cannot answer: the caller must see StoreError.
        await store.close()
        with pytest.raises(StoreError):
            await store.multi_get([("d", b"k", None)])
