"""Shared pieces of the fetch-path tests: the demo catalog, rows, a probe store, an engine."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from fetcher.api import VectorView
from fetcher.api._snapshot import Snapshot, build_snapshot
from fetcher.cache import L1Cache, L2Cache, SingleFlight
from fetcher.catalog._loader import Catalog, load_catalog
from fetcher.codec._avro import GroupCodec
from fetcher.codec._keys import KeyValue, key_encoder
from fetcher.engine._fetch import CacheTiers, FetchEngine, StoreHandle
from fetcher.engine._plan import TargetPlan
from fetcher.engine._rows import SLOT_OF_TYPE
from fetcher.metrics import Metrics
from fetcher.types import FeatureGroup, FeatureType
from kvstores import EmbeddedStore, KVStore, Row
from kvstores.base import Found, Lookup

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "demo"
MINUTE_MS = 60_000
DAY_MS = 86_400_000


def now_ms() -> int:
    """Wall-clock time in ms, as the engine reads it."""
    return time.time_ns() // 1_000_000


@functools.cache
def demo_catalog() -> Catalog:
    """config/demo, loaded once per test process (catalogs are immutable)."""
    return load_catalog(CONFIG_DIR)


def demo_snapshot(
    stores: Mapping[str, str] | None = None, offline: Collection[str] = ()
) -> Snapshot:
    """The demo snapshot; `stores` moves groups (name -> store name) to other stores,
    `offline` names groups and services to mark `online: false`."""
    catalog = demo_catalog()
    stores = stores or {}
    groups = {
        name: dataclasses.replace(
            group, store=stores.get(name, group.store), online=name not in offline
        )
        for name, group in catalog.groups.items()
    }
    services = {
        name: dataclasses.replace(service, online=name not in offline)
        for name, service in catalog.services.items()
    }
    return build_snapshot(dataclasses.replace(catalog, groups=groups, services=services))


def record(group: FeatureGroup, n: int) -> dict[str, Any]:
    """A full record of `group` whose values depend on `n` (nullable fields set, not null).

    Doubles are multiples of 1/4 so that Avro `float` fields keep them exactly.
    """
    out: dict[str, Any] = {}
    for index, feature in enumerate(group.features):
        name, kind = feature.name, feature.type
        if kind is FeatureType.DOUBLE:
            out[name] = n + index / 4
        elif kind is FeatureType.INT64:
            out[name] = n * 100 + index
        elif kind is FeatureType.STRING:
            out[name] = f"{name}-{n}"
        elif kind is FeatureType.BOOL:
            out[name] = (n + index) % 2 == 0
        elif kind is FeatureType.BYTES:
            out[name] = f"{name}{n}".encode()
        elif kind is FeatureType.DOUBLE_LIST:
            out[name] = [n + 0.25, n + 0.5]
        elif kind is FeatureType.INT64_LIST:
            out[name] = [n, index]
        elif kind is FeatureType.STRING_LIST:
            out[name] = [name, str(n)]
        else:
            out[name] = [True, n % 2 == 0]
    return out


def expected_slots(group: FeatureGroup, rec: Mapping[str, Any]) -> dict[str, Any]:
    """Feature name -> the value the engine must serve for it (lists as lists)."""
    return {f.name: rec[f.name] for f in group.features}


def vector_values(plan: TargetPlan, vector: VectorView) -> dict[str, Any]:
    """A vector read back to {prefixed feature name: value}, walking the slots."""
    cursors = [0] * len(vector.values)
    out: dict[str, Any] = {}
    for name, kind in zip(plan.feature_names, plan.feature_types, strict=True):
        slot = SLOT_OF_TYPE[kind]
        value = vector.values[slot][cursors[slot]]
        cursors[slot] += 1
        out[name] = list(value) if isinstance(value, tuple | list) else value
    return out


class ProbeStore(KVStore):
    """A KVStore around a real one that counts calls and can be slowed, gated or broken."""

    kind = "probe"

    def __init__(self, inner: KVStore) -> None:
        self.inner = inner
        self.calls: list[list[Lookup]] = []
        self.delay_s = 0.0
        self.error: Exception | None = None
        # When set, multi_get waits for it: a test decides when the store answers.
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        # (start, end) loop times of each multi_get, to tell parallel calls from serial ones.
        self.spans: list[tuple[float, float]] = []

    async def multi_get(self, lookups: Sequence[Lookup]) -> list[Found | None]:
        """Count the call, wait as configured, then answer from the inner store."""
        self.calls.append(list(lookups))
        self.entered.set()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.error is not None:
                raise self.error
            return await self.inner.multi_get(lookups)
        finally:
            self.spans.append((started, loop.time()))

    async def multi_put(self, rows: Sequence[Row]) -> None:
        """Write through to the inner store."""
        await self.inner.multi_put(rows)

    async def ping(self) -> None:
        """Ping the inner store."""
        await self.inner.ping()

    async def close(self) -> None:
        """Close the inner store."""
        await self.inner.close()


class FetchHarness:
    """A real EmbeddedStore in a temp dir (per store name), probed, behind a FetchEngine."""

    def __init__(
        self,
        root: Path,
        snapshot: Snapshot,
        *,
        store_names: Sequence[str] = ("main",),
        timeout_s: float = 1.0,
        l2: L2Cache | None = None,
        negative_ttl_s: float = 1.0,
        l2_ttl_s: float = 60.0,
    ) -> None:
        self.snapshot = snapshot
        self.metrics = Metrics()
        self.stores = {
            name: ProbeStore(EmbeddedStore(root / name, map_size=16 << 20, sync=False))
            for name in store_names
        }
        self.tiers = CacheTiers(
            l1=L1Cache(10_000),
            flights=SingleFlight(),
            l2=l2,
            default_l1_ttl_s=5.0,
            default_l2_ttl_s=l2_ttl_s,
            negative_ttl_s=negative_ttl_s,
        )
        self.engine = FetchEngine(
            {name: StoreHandle(name, store, timeout_s) for name, store in self.stores.items()},
            self.tiers,
            self.metrics,
        )

    def set_timeout(self, timeout_s: float) -> None:
        """Give every store this per-call timeout (the engine reads handles per request)."""
        self.engine._stores = {
            name: StoreHandle(name, store, timeout_s) for name, store in self.stores.items()
        }

    def group(self, name: str) -> FeatureGroup:
        """A group of the snapshot's catalog."""
        return self.snapshot.catalog.groups[name]

    def plan(self, kind: str, name: str) -> TargetPlan:
        """The plan of a feature group ("group") or feature service ("service")."""
        plans = self.snapshot.plans
        return (plans.groups if kind == "group" else plans.services)[name]

    async def write_raw(
        self, group: str, keys: Sequence[KeyValue], value: bytes, event_ms: int
    ) -> None:
        """Store `value` as-is for the entity `keys` of `group`."""
        g = self.group(group)
        key = key_encoder(g.keys)(keys)
        await self.stores[g.store].inner.multi_put([Row(g.dataset, key, value, event_ms)])

    async def write(
        self,
        group: str,
        keys: Sequence[KeyValue],
        rec: Mapping[str, Any],
        event_ms: int,
        codec: GroupCodec | None = None,
    ) -> None:
        """Encode `rec` (with the group's codec unless given) and store it."""
        encoder = codec or self.snapshot.catalog.codecs[group]
        await self.write_raw(group, keys, encoder.encode(rec), event_ms)

    async def fetch(
        self,
        kind: str,
        name: str,
        entities: Sequence[Sequence[KeyValue]],
        at: Sequence[int | None] | None = None,
        deadline: float | None = None,
    ) -> list[VectorView]:
        """Engine fetch for a target by kind and name, each vector read back."""
        ats: Sequence[int | None] = at if at is not None else [None] * len(entities)
        vectors = await self.engine.fetch(self.plan(kind, name), entities, ats, deadline)
        return [VectorView(v.wire) for v in vectors]

    def calls(self, store: str = "main") -> int:
        """multi_get calls the store has had."""
        return len(self.stores[store].calls)

    async def close(self) -> None:
        """Wait for background cache writes and close every store."""
        await self.engine.close()
        for store in self.stores.values():
            await store.close()
