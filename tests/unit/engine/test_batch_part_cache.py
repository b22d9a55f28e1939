"""The batch part L1 of aggregation groups: the engine names cached parts as known, uses
them when the store confirms them, and replaces or drops them when it does not.

An engine with the part cache and one without read the same EmbeddedStore: every
answer must be byte for byte the same, and the cached engine's store calls show the
part named as known (and its payload not sent) once it is cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from fetcher.aggregation import StateDecodeError
from fetcher.api._snapshot import Snapshot, build_snapshot
from fetcher.cache import L1Cache, PartCache, SingleFlight
from fetcher.catalog._loader import load_catalog
from fetcher.engine._fetch import CacheTiers, FetchEngine, StoreHandle
from fetcher.load import EventWriter
from fetcher.metrics import Metrics
from kvstores import EmbeddedStore, KnownPart, KVStore, LogEntry, LogLookup, LogRead, Row
from kvstores.base import Found, Lookup
from tests.unit.aggregation_support import NAME, demo_with_aggregation_group

HOUR = 3_600_000
E1 = 1_700_002_800_000  # a whole hour
E2 = E1 + 2 * HOUR


class RecordingStore(KVStore):
    """An EmbeddedStore that records each read_logs call: its known parts and answers."""

    kind = "recording"

    def __init__(self, inner: EmbeddedStore) -> None:
        self.inner = inner
        self.log_calls: list[tuple[list[KnownPart | None] | None, list[LogRead]]] = []

    async def multi_get(self, lookups: Sequence[Lookup]) -> list[Found | None]:
        return await self.inner.multi_get(lookups)

    async def multi_put(self, rows: Sequence[Row]) -> None:
        await self.inner.multi_put(rows)

    async def read_logs(
        self, lookups: Sequence[LogLookup], known: Sequence[KnownPart | None] | None = None
    ) -> list[LogRead]:
        reads = await self.inner.read_logs(lookups, known)
        self.log_calls.append((None if known is None else list(known), reads))
        return reads

    async def append_log(self, entries: Sequence[LogEntry]) -> None:
        await self.inner.append_log(entries)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


def _engine(store: KVStore, parts: PartCache | None) -> FetchEngine:
    tiers = CacheTiers(l1=L1Cache(1_000), flights=SingleFlight(), l2=None, default_l1_ttl_s=5.0,
                       default_l2_ttl_s=60.0, negative_ttl_s=1.0, parts=parts)  # fmt: skip
    return FetchEngine({"main": StoreHandle("main", store, 5.0)}, tiers, Metrics())


class World:
    """The demo catalog with the aggregation group, one store, two engines."""

    def __init__(self, root: Path) -> None:
        self.snapshot: Snapshot = build_snapshot(
            load_catalog(demo_with_aggregation_group(root / "config"))
        )
        self.store = RecordingStore(EmbeddedStore(root / "store", map_size=16 << 20, sync=False))
        self.parts = PartCache(1 << 20, 3_600.0)
        self.cached = _engine(self.store, self.parts)
        self.plain = _engine(self.store.inner, None)
        self.group = self.snapshot.catalog.groups[NAME]
        self.writer = EventWriter(self.group, self.store)
        self.plan = self.snapshot.plans.groups[NAME]
        self.history: list[tuple[int, dict[str, Any]]] = []

    async def events(self, user: int, times: Sequence[int]) -> None:
        """Push events of `user` at `times` (amount = the time's minute), kept as history."""
        key = self.writer.key_bytes([user])
        pushed = []
        for ts in times:
            values = {"amount": float(ts // 60_000 % 97)}
            self.history.append((ts, values))
            pushed.append(self.writer.event(key, ts, f"e{ts}", values))
        await self.writer.push(pushed)

    async def batch(self, user: int, end: int) -> bytes:
        """A batch run at `end` over every event so far; its part's bytes."""
        agg = self.writer.aggregator
        part = agg.batch_part([(ts, agg.codec.values(v)) for ts, v in self.history], end)
        await self.writer.write_batch_parts([(self.writer.key_bytes([user]), part)], end)
        return part

    async def both(self, user: int, at: int) -> bytes:
        """One read through each engine: the answers must be the same bytes."""
        (cached,) = await self.cached.fetch_wires(self.plan, [[user]], [at])
        (plain,) = await self.plain.fetch_wires(self.plan, [[user]], [at])
        assert cached == plain
        return cached

    def last_call(self) -> tuple[list[KnownPart | None] | None, list[LogRead]]:
        return self.store.log_calls[-1]

    def cached_end(self, user: int) -> int | None:
        reader = self.plan.joins[0].aggregate
        assert reader is not None
        part = self.parts.get((reader.part_ns, self.writer.key_bytes([user])))
        return None if part is None else part.ts_ms


@pytest.fixture
async def world(tmp_path: Path) -> Any:
    w = World(tmp_path)
    yield w
    await w.cached.close()
    await w.plain.close()
    await w.store.close()


async def test_a_cached_part_is_named_known_and_not_read_again(world: World) -> None:
    await world.events(1, [E1 - 50 * 60_000, E1 - 20 * 60_000, E1 - HOUR * 30])
    part = await world.batch(1, E1)
    await world.events(1, [E1 + 5 * 60_000, E1 + 25 * 60_000])
    at = E1 + 40 * 60_000
    await world.both(1, at)
    known, (read,) = world.last_call()
    assert known is None and read.batch == (E1, part)  # first read: the payload comes
    assert world.cached_end(1) == E1
    for _ in range(2):
        await world.both(1, at)
        known, (read,) = world.last_call()
        assert known == [(E1, len(part))]
        assert read.known and read.batch is None and len(read.events) == 2
    assert (world.parts.hits, world.parts.misses) == (2, 1)


async def test_a_new_batch_end_and_the_events_after_it_are_picked_up(world: World) -> None:
    await world.events(1, [E1 - 30 * 60_000])
    await world.batch(1, E1)
    await world.events(1, [E1 + 10 * 60_000, E1 + 70 * 60_000])
    between = E1 + 90 * 60_000
    await world.both(1, between)
    await world.both(1, between)
    assert world.last_call()[1][0].known
    # A later batch run, then an event after its end.
    newer = await world.batch(1, E2)
    await world.events(1, [E2 + 3 * 60_000])
    after = E2 + 30 * 60_000
    await world.both(1, after)
    known, (read,) = world.last_call()
    assert known is not None and known[0] is not None and known[0][0] == E1
    assert read.batch == (E2, newer) and not read.known  # the newer part, with its bytes
    assert world.cached_end(1) == E2
    await world.both(1, after)
    assert world.last_call()[0] == [(E2, len(newer))] and world.last_call()[1][0].known
    # A read between the two batch ends needs the older part: asked without the cached
    # (newer) one, and the cache keeps the newer one.
    await world.both(1, between)
    known, (read,) = world.last_call()
    assert known is None and read.batch is not None and read.batch[0] == E1
    assert world.cached_end(1) == E2


async def test_a_batch_part_at_an_older_time_than_the_windows_is_not_named(world: World) -> None:
    await world.events(1, [E1 - 60_000])
    await world.batch(1, E1)
    await world.both(1, E1 + HOUR)
    assert world.cached_end(1) == E1
    # Eight days on, every window starts after E1: the part is outside the range.
    late = E1 + 8 * 24 * HOUR
    await world.events(1, [late - 60_000])
    await world.both(1, late)
    known, (read,) = world.last_call()
    assert known is None and read.batch is None and len(read.events) == 1


async def test_a_part_that_does_not_decode_is_error_and_never_cached(world: World) -> None:
    key = world.writer.key_bytes([2])
    await world.store.append_log([LogEntry(world.group.dataset, key, E1, b"", b"\x02junk")])
    for _ in range(2):
        wire = await world.both(2, E1 + HOUR)
        known, (read,) = world.last_call()
        assert known is None and read.batch == (E1, b"\x02junk")
    assert world.cached_end(2) is None
    assert wire  # an ERROR row, the same in both engines (compared in both())


def _reader(world: World) -> Any:
    reader = world.plan.joins[0].aggregate
    assert reader is not None
    return reader


async def test_a_known_part_the_store_no_longer_confirms_is_dropped(world: World) -> None:
    await world.events(3, [E1 - 60_000])
    part = await world.batch(3, E1)
    await world.both(3, E1 + HOUR)
    reader = _reader(world)
    key = world.writer.key_bytes([3])
    held = world.parts.get((reader.part_ns, key))
    assert held is not None and held.payload == part
    # A read that named it and found no batch part at all (Redis or LMDB: it is gone).
    reader.row(LogRead(None, [], False), E1 + HOUR, key, held, world.parts)
    assert world.cached_end(3) is None
    # A store that answers `known` for a lookup that named none is a fault, not a row.
    with pytest.raises(StateDecodeError):
        reader.row(LogRead(None, [], False, True), E1 + HOUR, key, None, world.parts)


async def test_a_rerun_under_the_same_end_replaces_the_part_when_its_length_changed(
    world: World,
) -> None:
    await world.events(4, [E1 - 60_000])
    first = await world.batch(4, E1)
    await world.both(4, E1 + HOUR)
    # The rerun's source has 130 more events: counts past 127 take one more varint byte.
    await world.events(4, [E1 - 2 * 60_000 - i for i in range(130)])
    second = await world.batch(4, E1)
    assert len(second) != len(first)
    await world.both(4, E1 + HOUR)
    known, (read,) = world.last_call()
    assert known == [(E1, len(first))] and read.batch == (E1, second)
    reader = _reader(world)
    cached = world.parts.get((reader.part_ns, world.writer.key_bytes([4])))
    assert cached is not None and cached.payload == second
