"""The aggregation-log contract (KVStore.read_logs / append_log) as a reusable test suite.

Subclass `LogContract` in a `Test*` class and give it an `open_log_store` fixture: an
async callable that opens a store of the backend under test (the fixture cleans up what
its stores wrote). Every test writes under a dataset of its own (`dataset`), so tests
never see each other's entries and no server needs flushing. The property test compares
every backend with tests/log_model.py, the docs' rule the slow obvious way.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvstores import EMPTY_LOG, MAX_LOG_ID, KVStore, LogEntry, LogLookup, LogRead, StoreError
from tests.log_model import (
    MAX_TS,
    TRICKY_IDS,
    TRICKY_KEYS,
    Written,
    model_read,
    model_read_known,
    remember,
)

StoreOpener = Callable[[], Awaitable[KVStore]]


def _entry(dataset: str) -> st.SearchStrategy[LogEntry]:
    return st.builds(
        LogEntry,
        dataset=st.just(dataset),
        key=st.sampled_from([b"k", b"", b"k\x00"]),
        # Few times, so that ties and replacements are common; and the largest one.
        ts_ms=st.one_of(st.integers(0, 6), st.just(MAX_TS)),
        id=st.one_of(st.just(b""), st.sampled_from(TRICKY_IDS), st.binary(max_size=3)),
        payload=st.binary(max_size=4),
    )


_LOOKUP_PARTS = st.tuples(
    st.sampled_from([b"k", b"", b"k\x00", b"missing"]),
    st.one_of(st.integers(-2, 7), st.just(-(2**70))),  # lo
    st.one_of(st.integers(-1, 8), st.just(MAX_TS), st.just(2**70)),  # hi
    st.integers(0, 5),  # limit
)


class LogContract:
    """Tests every store's read_logs/append_log must pass; subclasses open the stores."""

    #: The short TTL the expiry test writes, the time from the start of the write within
    #: which the entry is surely still there (stores round TTLs to seconds differently),
    #: and the time from the end of the write after which it is surely gone.
    ttl_s = 2
    ttl_present_s = 0.8
    ttl_gone_s = 3.3
    #: Whether a read concurrent with a write sees all of a key's entries or none of them.
    isolated_reads = True
    #: Examples of the property test (each is a few calls on a real server).
    model_examples = 10
    #: Entries of the long scan (more than any backend's chunk or page) and keys of the
    #: many-keys call; smaller where the test server is slow (moto copies a table per
    #: transaction).
    long_scan = 1_200
    many_keys = 150
    #: Whether the backend checks a known part itself (Redis, LMDB: `known` only when the
    #: part is there with the known length) or reads past its position (Cassandra,
    #: DynamoDB: `known` means "no newer batch part").
    sees_known_part = True

    @pytest.fixture
    def dataset(self) -> str:
        return f"log{uuid.uuid4().hex[:10]}"

    @pytest.fixture
    async def store(self, open_log_store: StoreOpener) -> AsyncIterator[KVStore]:
        store = await open_log_store()
        yield store
        await store.close()

    async def test_empty_calls(self, store: KVStore) -> None:
        await store.append_log([])
        assert await store.read_logs([]) == []

    async def test_missing_log_is_empty(self, store: KVStore, dataset: str) -> None:
        assert await store.read_logs([(dataset, b"k", 0, MAX_TS, 10)]) == [EMPTY_LOG]

    async def test_newest_first_by_time_then_id_bytes(self, store: KVStore, dataset: str) -> None:
        entries = [LogEntry(dataset, b"k", ts, id, b"%d/" % ts + id)
                   for ts in (5, 7, 1_000_000) for id in TRICKY_IDS]  # fmt: skip
        await store.append_log(entries[::-1])  # order written does not matter
        expected = sorted(((e.ts_ms, e.id, e.payload) for e in entries), reverse=True)
        got = await store.read_logs([(dataset, b"k", 0, MAX_TS, 1_000)])
        assert got == [LogRead(None, expected, False)]

    async def test_batch_part_sorts_before_the_events_of_its_time(
        self, store: KVStore, dataset: str
    ) -> None:
        await store.append_log([
            LogEntry(dataset, b"k", 99, b"before", b"e99"),
            LogEntry(dataset, b"k", 100, b"\x00", b"e100-00"),
            LogEntry(dataset, b"k", 100, b"", b"batch100"),
            LogEntry(dataset, b"k", 100, b"x", b"e100-x"),
            LogEntry(dataset, b"k", 101, b"", b"batch101-hidden-by-hi"),
        ])  # fmt: skip
        got = await store.read_logs([(dataset, b"k", 0, 100, 10)])
        # The events of its own time are newer than the batch part; the event at 99 is
        # behind it, so never read.
        events = [(100, b"x", b"e100-x"), (100, b"\x00", b"e100-00")]
        assert got == [LogRead((100, b"batch100"), events, False)]

    async def test_scan_stops_at_the_first_batch_part(self, store: KVStore, dataset: str) -> None:
        def event(ts: int) -> LogEntry:
            return LogEntry(dataset, b"k", ts, b"e%d" % ts, b"p%d" % ts)

        await store.append_log([
            event(5), LogEntry(dataset, b"k", 20, b"", b"part20"), event(25), event(30),
            LogEntry(dataset, b"k", 50, b"", b"part50"), event(60), event(70),
        ])  # fmt: skip
        got = await store.read_logs([
            (dataset, b"k", 0, 100, 100), (dataset, b"k", 0, 49, 100),
            (dataset, b"k", 0, 19, 100), (dataset, b"k", 0, 50, 100),
        ])  # fmt: skip
        assert got == [
            LogRead((50, b"part50"), [(70, b"e70", b"p70"), (60, b"e60", b"p60")], False),
            LogRead((20, b"part20"), [(30, b"e30", b"p30"), (25, b"e25", b"p25")], False),
            LogRead(None, [(5, b"e5", b"p5")], False),
            LogRead((50, b"part50"), [], False),
        ]

    async def test_a_known_part_is_not_sent_again(self, store: KVStore, dataset: str) -> None:
        def event(ts: int, id: bytes | None = None) -> LogEntry:
            return LogEntry(dataset, b"k", ts, b"e%d" % ts if id is None else id, b"p%d" % ts)

        part20, part50 = b"part20", b"part50, a longer payload"
        await store.append_log([
            event(5), LogEntry(dataset, b"k", 20, b"", part20), event(25), event(30),
            LogEntry(dataset, b"k", 50, b"", part50), event(50, b"\x00"), event(50, b"x"),
            event(60), event(70),
        ])  # fmt: skip
        after50 = [(70, b"e70", b"p70"), (60, b"e60", b"p60"), (50, b"x", b"p50"),
                   (50, b"\x00", b"p50")]  # fmt: skip
        known50, known20 = (50, len(part50)), (20, len(part20))
        lookups: list[LogLookup] = [
            (dataset, b"k", 0, 100, 100), (dataset, b"k", 0, 100, 100),
            (dataset, b"k", 0, 49, 100), (dataset, b"k", 0, 100, 3),
            (dataset, b"k", 0, 100, 4), (dataset, b"k", 0, 19, 100),
            (dataset, b"k", 21, 100, 100), (dataset, b"k", 0, 100, 100),
            (dataset, b"missing", 0, 100, 100),
        ]  # fmt: skip
        known = [known50, known20, known20, known50, known50, known20, known20, None, known50]
        got = await store.read_logs(lookups, known)
        full = LogRead((50, part50), after50, False)
        assert got == [
            LogRead(None, after50, False, True),  # the known part ends the scan: not sent
            full,  # a newer part than the known one: sent
            LogRead(None, [(30, b"e30", b"p30"), (25, b"e25", b"p25")], False, True),
            LogRead(None, after50[:3], True),  # the limit before the known part: truncated
            LogRead(None, after50, False, True),  # exactly the limit, then the known part
            LogRead(None, [(5, b"e5", b"p5")], False),  # known part outside the range
            full,  # lo above the known part: an ordinary read
            full,  # no known part for this lookup
            # No log: the store never meets the part, and cannot always tell.
            EMPTY_LOG if self.sees_known_part else LogRead(None, [], False, True),
        ]
        # A known part that is not there (nothing at 40): Redis and LMDB answer what the
        # whole range holds (an older part included); the others cannot see it is missing.
        (gone,) = await store.read_logs([(dataset, b"k", 0, 49, 100)], [(40, 5)])
        if self.sees_known_part:
            assert gone == LogRead((20, part20), [(30, b"e30", b"p30"), (25, b"e25", b"p25")],
                                   False)
        else:
            assert gone == LogRead(None, [], False, True)
        # The same time with another length (a batch job rerun under the same end).
        (changed,) = await store.read_logs([(dataset, b"k", 0, 100, 100)], [(50, 3)])
        if self.sees_known_part:
            assert changed == full
        else:
            assert changed == LogRead(None, after50, False, True)
        # Without `known` at all, reads are as before.
        assert await store.read_logs(lookups[:1]) == [full]

    async def test_bounds_are_inclusive_and_clamped(self, store: KVStore, dataset: str) -> None:
        await store.append_log([LogEntry(dataset, b"k", ts, b"e", b"%d" % ts)
                                for ts in (0, 10, 20, 30, MAX_TS)])  # fmt: skip

        def events(*times: int) -> LogRead:
            return LogRead(None, [(ts, b"e", b"%d" % ts) for ts in times], False)

        got = await store.read_logs([
            (dataset, b"k", 10, 30, 10), (dataset, b"k", 11, 29, 10), (dataset, b"k", 20, 20, 10),
            (dataset, b"k", 21, 20, 10), (dataset, b"k", -(2**70), 2**70, 10),
            (dataset, b"k", -5, -1, 10), (dataset, b"k", MAX_TS, MAX_TS, 10),
        ])  # fmt: skip
        assert got == [
            events(30, 20, 10), events(20), events(20), EMPTY_LOG,
            events(MAX_TS, 30, 20, 10, 0), EMPTY_LOG, events(MAX_TS),
        ]  # fmt: skip

    async def test_limit_and_truncated(self, store: KVStore, dataset: str) -> None:
        # Key "e": five events. Key "b": three events, then a batch part, then more events.
        five = [(ts, b"e%d" % ts, b"p") for ts in (50, 40, 30, 20, 10)]
        three = five[:3]
        await store.append_log(
            [LogEntry(dataset, b"e", ts, id, p) for ts, id, p in five]
            + [LogEntry(dataset, b"b", ts, id, p) for ts, id, p in three]
            + [LogEntry(dataset, b"b", 25, b"", b"part"), LogEntry(dataset, b"b", 5, b"old", b"p")]
        )
        got = await store.read_logs([
            (dataset, b"e", 0, 100, 5), (dataset, b"e", 0, 100, 6), (dataset, b"e", 0, 100, 4),
            (dataset, b"e", 0, 100, 0), (dataset, b"b", 0, 100, 3), (dataset, b"b", 0, 100, 2),
            (dataset, b"b", 26, 100, 3), (dataset, b"b", 0, 25, 0),
        ])  # fmt: skip
        assert got == [
            LogRead(None, five, False),  # exactly the limit, nothing more in range
            LogRead(None, five, False),
            LogRead(None, five[:4], True),  # one more event: truncated
            LogRead(None, [], True),
            # After the limit the one more entry is the batch part: returned, not truncated.
            LogRead((25, b"part"), three, False),
            LogRead(None, three[:2], True),
            LogRead(None, three, False),  # lo above the batch part: no more in range
            LogRead((25, b"part"), [], False),  # limit 0, the batch part first
        ]

    async def test_long_scans(self, store: KVStore, dataset: str) -> None:
        # Longer than any one chunk or page a backend reads.
        count = self.long_scan
        await store.append_log(
            [LogEntry(dataset, b"k", 0, b"", b"part")]
            + [LogEntry(dataset, b"k", 1 + i // 3, b"%04d" % i, b"v" * 20) for i in range(count)]
        )
        events = sorted(((1 + i // 3, b"%04d" % i, b"v" * 20) for i in range(count)), reverse=True)
        got = await store.read_logs([
            (dataset, b"k", 0, MAX_TS, count), (dataset, b"k", 0, MAX_TS, count - 1),
            (dataset, b"k", 0, MAX_TS, 5_000), (dataset, b"k", 1, MAX_TS, count),
        ])  # fmt: skip
        assert got == [
            LogRead((0, b"part"), events, False),
            LogRead(None, events[:-1], True),
            LogRead((0, b"part"), events, False),
            LogRead(None, events, False),
        ]

    async def test_same_identity_replaces(self, store: KVStore, dataset: str) -> None:
        def entry(ts: int, id: bytes, payload: bytes) -> LogEntry:
            return LogEntry(dataset, b"k", ts, id, payload)

        await store.append_log([
            entry(10, b"a", b"first, a long payload"), entry(10, b"a\x00", b"a00"),
            entry(10, b"ab", b"ab"), entry(10, b"", b"old part"), entry(20, b"a", b"at 20"),
        ])  # fmt: skip
        # A later call replaces them, whatever the new payload's length...
        await store.append_log([entry(10, b"a", b"2nd"), entry(10, b"", b"new part, longer")])
        # ...and in one call the last entry of an identity wins.
        await store.append_log([entry(20, b"a", b"x"), entry(20, b"a", b"last"),
                                entry(10, b"ab", b"")])  # fmt: skip
        got = await store.read_logs([(dataset, b"k", 0, 100, 100)])
        assert got == [LogRead(
            (10, b"new part, longer"),
            [(20, b"a", b"last"), (10, b"ab", b""), (10, b"a\x00", b"a00"), (10, b"a", b"2nd")],
            False,
        )]  # fmt: skip

    async def test_many_keys_and_datasets_in_one_call(self, store: KVStore, dataset: str) -> None:
        other = dataset + ".v2"
        written: Written = {}
        keys = range(self.many_keys)
        entries = [LogEntry(ds, b"key-%03d" % k, ts, b"e", b"%s/%d/%d" % (ds.encode(), k, ts))
                   for ds in (dataset, other) for k in keys for ts in (1, 2)]  # fmt: skip
        entries += [LogEntry(dataset, key, 3, b"", b"part " + key) for key in TRICKY_KEYS]
        await store.append_log(entries)
        remember(written, entries)
        lookups: list[LogLookup] = [(ds, b"key-%03d" % k, 0, 10, 10)
                                    for k in keys[::7] for ds in (other, dataset)]
        lookups += [(dataset, key, 0, 10, 10) for key in TRICKY_KEYS]
        lookups += [(dataset, b"key-999", 0, 10, 10), lookups[0], (dataset, b"key-001", 0, 1, 0)]
        got = await store.read_logs(lookups)
        assert got == [model_read(written, lookup) for lookup in lookups]

    async def test_binary_payloads(self, store: KVStore, dataset: str) -> None:
        payloads = [b"", b"\x00", b"\x00\x00", bytes(range(256)) * 4, b"\x00\x01" * 50_000]
        entries = [LogEntry(dataset, b"k", 7, b"%d" % i, p) for i, p in enumerate(payloads)]
        entries.append(LogEntry(dataset, b"k", 6, b"", b"\x00\x00\x00"))
        entries.append(LogEntry(dataset, b"k", 8, b"\xff" * MAX_LOG_ID, b"longest id"))
        await store.append_log(entries)
        written: Written = {}
        remember(written, entries)
        lookup = (dataset, b"k", 0, MAX_TS, 100)
        assert await store.read_logs([lookup]) == [model_read(written, lookup)]

    async def test_a_key_is_written_all_or_nothing(self, store: KVStore, dataset: str) -> None:
        # Rewrites of the same 100 entries with a new payload each round, read meanwhile:
        # every read sees one round's entries, all of them, or (before the first) none.
        count = 100
        seen: set[int] = set()

        async def write(rounds: int) -> None:
            for r in range(rounds):
                await store.append_log([LogEntry(dataset, b"k", 1 + i % 10, b"%03d" % i, b"%d" % r)
                                        for i in range(count)])  # fmt: skip
                await asyncio.sleep(0)

        writer = asyncio.ensure_future(write(4))
        try:
            while True:
                done = writer.done()
                (read,) = await store.read_logs([(dataset, b"k", 0, 100, 1_000)])
                payloads = {payload for _, _, payload in read.events}
                seen.add(len(read.events))
                if self.isolated_reads:
                    assert len(read.events) in (0, count), len(read.events)
                    assert len(payloads) <= 1, payloads
                if done:
                    break
                await asyncio.sleep(0)
        finally:
            await writer
        assert len(read.events) == count and payloads == {b"3"}

    async def test_ttl_expiry(self, store: KVStore, dataset: str) -> None:
        before = time.monotonic()
        await store.append_log([
            LogEntry(dataset, b"short", 1, b"e", b"gone soon", ttl_s=self.ttl_s),
            LogEntry(dataset, b"short", 2, b"", b"part gone soon", ttl_s=self.ttl_s),
            LogEntry(dataset, b"forever", 1, b"e", b"stays"),
            LogEntry(dataset, b"long", 1, b"e", b"stays too", ttl_s=3_600),
        ])  # fmt: skip
        after = time.monotonic()  # the store wrote them between `before` and now
        lookups: list[LogLookup] = [(dataset, key, 0, 10, 10)
                                    for key in (b"short", b"forever", b"long")]  # fmt: skip
        stays = [LogRead(None, [(1, b"e", b"stays")], False),
                 LogRead(None, [(1, b"e", b"stays too")], False)]  # fmt: skip
        got = await store.read_logs(lookups)
        assert got[1:] == stays
        # On a machine so busy that the read came late, the short entries may rightly be
        # gone: that is no failure of the store.
        if time.monotonic() - before < self.ttl_present_s:
            assert got[0] == LogRead((2, b"part gone soon"), [], False)
        await asyncio.sleep(max(0.0, after + self.ttl_gone_s - time.monotonic()))
        assert await store.read_logs(lookups) == [EMPTY_LOG, *stays]

    async def test_bad_entries_are_refused_before_anything_is_written(
        self, store: KVStore, dataset: str
    ) -> None:
        good = LogEntry(dataset, b"k", 1, b"e", b"p")
        bad = {
            "ts_ms": [LogEntry(dataset, b"k", -1, b"e", b"p"),
                      LogEntry(dataset, b"k", 2**53, b"e", b"p"),
                      LogEntry(dataset, b"k", 1.5, b"e", b"p")],
            "id": [LogEntry(dataset, b"k", 1, b"x" * (MAX_LOG_ID + 1), b"p"),
                   LogEntry(dataset, b"k", 1, "e", b"p")],
            "ttl_s": [LogEntry(dataset, b"k", 1, b"e", b"p", ttl_s=0)],
            "dataset": [LogEntry("", b"k", 1, b"e", b"p")],
        }  # fmt: skip
        for field, entries in bad.items():
            for entry in entries:
                with pytest.raises(ValueError, match=f"^{field} "):
                    await store.append_log([good, entry])
        assert await store.read_logs([(dataset, b"k", 0, 10, 10)]) == [EMPTY_LOG]
        with pytest.raises(ValueError, match="limit"):
            await store.read_logs([(dataset, b"k", 0, 10, -1)])
        with pytest.raises(ValueError, match="dataset"):
            await store.read_logs([(dataset, b"k", 0, 10, 1), ("", b"k", 0, 10, 1)])

    async def test_use_after_close_is_a_store_error(self, store: KVStore, dataset: str) -> None:
        await store.close()
        with pytest.raises(StoreError):
            await store.read_logs([(dataset, b"k", 0, 10, 1)])
        with pytest.raises(StoreError):
            await store.append_log([LogEntry(dataset, b"k", 1, b"e", b"p")])

    @pytest.mark.timeout(180)
    def test_reads_equal_the_model(self, open_log_store: StoreOpener) -> None:
        # Random calls of random entries (ties, replacements, batch parts, tricky ids) and
        # random lookups: every read must be what the docs' rule gives. One store for all
        # examples (opening one costs a connection), a dataset of its own per example.
        names = (f"m{uuid.uuid4().hex[:8]}.{n}" for n in itertools.count())
        with asyncio.Runner() as runner:
            store = runner.run(open_log_store())

            @settings(max_examples=self.model_examples, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
            @given(data=st.data())
            def check(data: st.DataObject) -> None:
                dataset = next(names)
                calls = data.draw(st.lists(st.lists(_entry(dataset), max_size=12), max_size=3))
                parts = data.draw(st.lists(_LOOKUP_PARTS, min_size=1, max_size=8))
                lookups = [(dataset, key, lo, hi, limit) for key, lo, hi, limit in parts]
                written: Written = {}
                for entries in calls:
                    runner.run(store.append_log(entries))
                    remember(written, entries)
                got = runner.run(store.read_logs(lookups))
                assert got == [model_read(written, lookup) for lookup in lookups]
                # The same lookups with known parts: ones the log holds, and others.
                parts_held = [(ts, len(p)) for (_, _, ts, id), p in written.items() if not id]
                known = data.draw(st.lists(
                    st.none() | st.sampled_from(parts_held or [(0, 0)])
                    | st.tuples(st.integers(0, 7), st.integers(0, 4)),
                    min_size=len(lookups), max_size=len(lookups),
                ))  # fmt: skip
                got = runner.run(store.read_logs(lookups, known))
                assert got == [
                    model_read_known(written, lookup, part, sees_part=self.sees_known_part)
                    for lookup, part in zip(lookups, known, strict=True)
                ]

            try:
                check()
            finally:
                runner.run(store.close())

