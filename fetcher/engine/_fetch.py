"""The fetch engine: plan -> tiered cache -> stores in parallel -> decode -> merge.

One request reads each store once (one multi_get with every lookup for it), all
stores concurrently, bounded by the store's timeout and the client's deadline.
A store that fails or times out yields ERROR for its groups only. Each store is
guarded (fetcher.engine._breaker): at most `max_in_flight` reads run at once (waiting for a
slot spends the request's own deadline) and a circuit breaker fails reads fast while
the store keeps failing, probing it again after a cooldown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fetcher.cache import CachedPart, CacheKey, FetchAbandoned, L2Cache, Negative
from fetcher.codec import KeyValue, decode_cause
from fetcher.engine._aggregate import AggregateReader, TooManyEvents
from fetcher.engine._breaker import DeadlineTimer, StoreGuard
from fetcher.engine._derive import DerivedPlan
from fetcher.engine._merge import (
    ERROR,
    NOT_FOUND,
    EntityVector,
    LookupResult,
    merge_vector,
    merge_wires,
)
from fetcher.engine._plan import JoinPlan, TargetPlan
from fetcher.engine._rows import GroupRow
from fetcher.engine._tiers import CacheTiers, StoreHandle
from fetcher.metrics import Metrics
from kvstores import Found, KVStore, LogRead, StoreError

log = logging.getLogger("fetcher.engine")

__all__ = ["CacheTiers", "FetchEngine", "StoreHandle", "decode_cause"]

# How many times a request re-claims keys whose owner went away (cancelled, or out of
# its own deadline) before giving them ERROR; each try is bounded by the deadline anyway.
_ABANDONED_RETRIES = 2


class FetchEngine:
    """Serves target plans from the stores through the cache tiers."""

    def __init__(
        self, stores: Mapping[str, StoreHandle], cache: CacheTiers, metrics: Metrics
    ) -> None:
        self._stores = dict(stores)
        self._cache = cache
        self._metrics = metrics
        self._guards: dict[str, StoreGuard] = {}
        self._timer = DeadlineTimer()
        # Background L2 writes: kept referenced so they are not garbage-collected mid-flight.
        self._background: set[asyncio.Task[None]] = set()

    async def fetch(
        self,
        plan: TargetPlan,
        entities: Sequence[Sequence[KeyValue]],
        at_ms: Sequence[int | None],
        deadline: float | None = None,
        contexts: Sequence[Sequence[Any]] | None = None,
    ) -> list[EntityVector]:
        """Vectors for `entities` (request key values in plan order), read as of `at_ms`.

        `deadline` is an event-loop time (loop.time()) after which no store work continues;
        `contexts[i]` are entity i's request-time values in `plan.context` order (checked
        by the caller), which a service's derivations read.
        """
        wires = await self.fetch_wires(plan, entities, at_ms, deadline, contexts)
        return [EntityVector(wire) for wire in wires]

    async def fetch_wires(
        self,
        plan: TargetPlan,
        entities: Sequence[Sequence[KeyValue]],
        at_ms: Sequence[int | None],
        deadline: float | None = None,
        contexts: Sequence[Sequence[Any]] | None = None,
    ) -> list[bytes]:
        """fetch(), each vector as its FeatureVector wire bytes (what the service sends)."""
        joins = plan.joins
        cache = self._cache
        l1_get = cache.l1.get if cache.l1_enabled else None
        results: dict[CacheKey, LookupResult] = {}
        owners: dict[CacheKey, JoinPlan] = {}
        misses: list[CacheKey] = []
        # Every entity's key of every join, entity by entity (join j of entity i at
        # i * len(joins) + j): the merge takes it column by column with slices.
        row_keys: list[CacheKey] = []
        add = row_keys.append
        shared = plan.shared_key
        entity_key = b""
        # One pass: build each key, deduplicate it, and look it up in L1.
        for values, at in zip(entities, at_ms, strict=True):
            if shared is not None:
                entity_key = shared(values)  # the same bytes for every join: encode once
            for join in joins:
                key: CacheKey = (
                    join.cache_ns, entity_key if shared is not None else join.entity_key(values),
                    at,
                )
                add(key)
                if key in owners:
                    continue
                owners[key] = join
                if l1_get is not None and join.cache.l1:
                    cached = l1_get(key)
                    if cached is not None:
                        results[key] = cached  # type: ignore[assignment]
                        continue
                misses.append(key)
        if misses:
            await self._fill(
                misses, owners, results, deadline, _ABANDONED_RETRIES, plan.one_store,
                plan.has_aggregates,
            )

        now_ms = time.time_ns() // 1_000_000
        found = list(map(results.__getitem__, row_keys))
        if len(at_ms) == 1:
            # One entity (GetFeatures): merging it alone is cheaper than by columns.
            at = at_ms[0]
            wires = [merge_vector(plan, found, now_ms if at is None else at).wire]
        else:
            width = len(joins)
            wires = merge_wires(plan, [found[j::width] for j in range(width)], at_ms, now_ms)
        if plan.derived is None:
            return wires
        return self._derive(plan, plan.derived, wires, found, contexts)

    def _derive(
        self,
        plan: TargetPlan,
        derived: DerivedPlan,
        wires: list[bytes],
        found: Sequence[LookupResult],
        contexts: Sequence[Sequence[Any]] | None,
    ) -> list[bytes]:
        """`wires` with each entity's derived row appended (docs/derivations.md, "Serving")."""
        event_ms = derived.event_times(found, len(plan.joins), len(wires))
        try:
            rows = derived.rows(wires, contexts, event_ms)
        except Exception as exc:
            # Not a row's runtime error (those are ERROR in their row, inside `rows`): a
            # bug. The derived features of this batch are ERROR; the call is served.
            self._metrics.decode_failed(plan.name, "derivations")
            self._metrics.log_limited(
                log, f"derive:{plan.name}", "service %s: derived features of %d entities "
                "are ERROR: %r", plan.name, len(wires), exc,
            )
            rows = derived.error_rows(event_ms)
        return list(map(bytes.__add__, wires, rows))

    async def _fill(
        self,
        misses: list[CacheKey],
        owners: Mapping[CacheKey, JoinPlan],
        results: dict[CacheKey, LookupResult],
        deadline: float | None,
        retries: int,
        one_store: str | None = None,
        aggregates: bool = False,
    ) -> None:
        flights = self._cache.flights
        mine, waiting = flights.claim(misses)
        if mine:
            owned = misses if len(mine) == len(misses) else [misses[i] for i in mine]
            # Cancelled or failed before resolving: our claims are released so waiters of
            # other requests get an answer now instead of hanging until their deadline
            # (flights.owning(), inlined: a generator context manager per request costs).
            try:
                await self._load(owned, owners, results, deadline, one_store, aggregates)
            except BaseException as exc:
                flights.abandon(owned, exc)
                raise
            flights.release_all(owned)
        if waiting:
            abandoned = await self._await_others(misses, waiting, results, deadline)
            if abandoned:
                if retries > 0 and (
                    deadline is None or deadline > asyncio.get_running_loop().time()
                ):
                    # The owner went away without an answer (its client cancelled, or its
                    # own shorter deadline ran out): fetch under our own deadline instead.
                    await self._fill(
                        abandoned, owners, results, deadline, retries - 1, one_store,
                        aggregates,
                    )
                else:
                    for key in abandoned:
                        results[key] = ERROR

    async def _await_others(
        self,
        misses: list[CacheKey],
        waiting: list[tuple[int, asyncio.Future[object]]],
        results: dict[CacheKey, LookupResult],
        deadline: float | None,
    ) -> list[CacheKey]:
        """Collect other requests' fetches; return the keys whose owner gave up on them."""
        timeout = None
        if deadline is not None:
            timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        futures = [future for _, future in waiting]
        # Each waiter has a future of its own, so giving up here cancels nobody else's fetch.
        await asyncio.wait(futures, timeout=timeout)
        abandoned: list[CacheKey] = []
        for index, future in waiting:
            key = misses[index]
            if not future.done() or future.cancelled():
                results[key] = ERROR
                continue
            exc = future.exception()
            if exc is None:
                results[key] = future.result()  # type: ignore[assignment]
            elif isinstance(exc, FetchAbandoned):
                abandoned.append(key)
            else:
                results[key] = ERROR
        return abandoned

    async def _load(
        self,
        owned: list[CacheKey],
        owners: Mapping[CacheKey, JoinPlan],
        results: dict[CacheKey, LookupResult],
        deadline: float | None,
        one_store: str | None = None,
        aggregates: bool = False,
    ) -> None:
        """Read `owned` from L2 and the stores; `one_store` names the store of every key
        when the target has only one (the keys then need no sorting by store);
        `aggregates`: some keys are of aggregation groups (they read logs)."""
        l2 = self._cache.l2
        remaining = owned
        if l2 is not None:
            l2_keys = [key for key in owned if owners[key].cache.l2]
            if l2_keys:
                remaining = [key for key in owned if not owners[key].cache.l2]
                hits = await l2.get_many([(owners[k].l2_ns, k[1], k[2]) for k in l2_keys])
                for key, hit in zip(l2_keys, hits, strict=True):
                    if hit is None:
                        remaining.append(key)
                    elif hit is Negative:
                        self._settle(key, owners[key], NOT_FOUND, l2_write=None)
                        results[key] = NOT_FOUND
                    else:
                        assert isinstance(hit, tuple)
                        results[key] = self._decoded(key, owners[key], hit, l2_write=None)
        if not remaining:
            return
        by_store: dict[str, list[CacheKey]] = {}
        if one_store is not None:
            by_store[one_store] = remaining
        else:
            for key in remaining:
                by_store.setdefault(owners[key].store, []).append(key)
        l2_writes: list[tuple[CacheKey, Found | None]] = []
        if len(by_store) == 1:
            ((name, keys),) = by_store.items()
            await self._read_store(
                name, keys, owners, results, deadline, l2_writes, aggregates
            )
        else:
            await asyncio.gather(
                *(
                    self._read_store(
                        name, keys, owners, results, deadline, l2_writes, aggregates
                    )
                    for name, keys in by_store.items()
                )
            )
        if l2_writes and l2 is not None:
            self._write_l2(l2, l2_writes, owners)

    def _write_l2(
        self,
        l2: L2Cache,
        writes: list[tuple[CacheKey, Found | None]],
        owners: Mapping[CacheKey, JoinPlan],
    ) -> None:
        # put_many takes one row TTL: split by the groups' own l2_ttl_seconds (usually
        # one or two distinct values per request).
        default_ttl = self._cache.default_l2_ttl_s
        by_ttl: dict[float, list[tuple[CacheKey, Found | None]]] = {}
        for key, found in writes:
            join = owners[key]
            ttl = join.cache.l2_ttl_s
            by_ttl.setdefault(default_ttl if ttl is None else ttl, []).append(
                ((join.l2_ns, key[1], key[2]), found)
            )
        for ttl, items in by_ttl.items():
            task = asyncio.create_task(l2.put_many(items, ttl, self._cache.negative_ttl_s))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _read_store(
        self,
        name: str,
        keys: list[CacheKey],
        owners: Mapping[CacheKey, JoinPlan],
        results: dict[CacheKey, LookupResult],
        deadline: float | None,
        l2_writes: list[tuple[CacheKey, Found | None]],
        aggregates: bool = False,
    ) -> None:
        handle = self._stores.get(name)
        if handle is None:
            # A catalog naming a store this process did not open: its groups are ERROR.
            exc = StoreError(f"store {name!r} is not open in this process")
            self._failed(name, keys, results, exc, 0.0, timed_out=False)
            return
        guard = self.guard(name)
        breaker = guard.breaker
        if not breaker.allow():
            guard.rejected.inc()
            self._failed(
                name, keys, results,
                StoreError(f"store {name!r}: circuit open after repeated failures"), 0.0,
                timed_out=False, counted=False,
            )
            return
        loop = asyncio.get_running_loop()
        timeout = handle.timeout_s
        bounded_by_deadline = False
        if deadline is not None:
            left = max(0.0, deadline - loop.time())
            if left < timeout:
                timeout, bounded_by_deadline = left, True
        # A read cut short (by the client's deadline or a slot wait) that times out says
        # nothing about the store: it is no breaker failure.
        full_timeout = not bounded_by_deadline
        slots = guard.slots
        if slots is not None and slots.locked():
            # Every slot is taken (a slow store): wait, but only as long as this read
            # could still run; the wait is taken from the read's own time budget.
            waited_from = loop.time()
            try:
                async with asyncio.timeout(timeout):
                    await slots.acquire()
            except TimeoutError as exc:
                breaker.abandon()
                guard.slot_timeouts.inc()
                self._failed(name, keys, results, exc, 0.0, timed_out=True,
                             abandoned=bounded_by_deadline, counted=False)
                return
            except BaseException:
                breaker.abandon()
                raise
            timeout = max(0.0, timeout - (loop.time() - waited_from))
            full_timeout = False
        elif slots is not None:
            await slots.acquire()  # free slot: returns at once, no suspension
        # The read time of aggregation keys read as of now (plain reads need no clock).
        now_ms = time.time_ns() // 1_000_000 if aggregates else 0
        started = time.perf_counter()
        verdict = False  # until the breaker hears success or failure, it hears abandon
        guard.entered()
        found: Sequence[Any]  # Found | None per key, (LogRead, part) for aggregation keys
        try:
            # asyncio.timeout(timeout), through the engine's one shared timer.
            expiry = self._timer.arm(loop, loop.time() + timeout)
            try:
                if aggregates:
                    found = await self._read_mixed(handle.store, keys, owners, now_ms)
                else:
                    found = await handle.store.multi_get(
                        [(owners[key].dataset, key[1], key[2]) for key in keys]
                    )
            except asyncio.CancelledError:
                if expiry.close():
                    raise TimeoutError from None
                raise
            except BaseException:
                expiry.close()
                raise
            expiry.close()
            if len(found) != len(keys):
                raise StoreError(f"answered {len(found)} results for {len(keys)} lookups")
        except TimeoutError as exc:
            if full_timeout:
                breaker.failure()  # the store's own timeout: the store is slow
                verdict = True
            self._failed(
                name, keys, results, exc, started, timed_out=True, abandoned=bounded_by_deadline
            )
            return
        except Exception as exc:
            # StoreError, or a backend bug: either way only this store's groups are ERROR.
            breaker.failure()
            verdict = True
            self._failed(name, keys, results, exc, started, timed_out=False)
            return
        else:
            breaker.success()
            verdict = True
        finally:
            guard.left()
            if slots is not None:
                slots.release()
            if not verdict:
                breaker.abandon()
        requests, latency = guard.store_metrics
        requests.inc()
        latency.observe(time.perf_counter() - started)
        cache = self._cache
        l1_put = cache.l1.put if cache.l1_enabled else None
        # Keys whose row is built on the common path: their flights are resolved after
        # the loop, in one call.
        built: list[CacheKey] = []
        add_built = built.append
        for key, hit in zip(keys, found, strict=True):
            join = owners[key]
            policy = join.cache
            if aggregates and join.aggregate is not None:
                at = key[2]
                results[key] = self._aggregated(key, join, hit, now_ms if at is None else at)
                continue
            if hit is None:
                results[key] = NOT_FOUND
                self._settle(key, join, NOT_FOUND, l2_write=l2_writes)
                continue
            if policy.l2:
                results[key] = self._decoded(key, join, hit, l2_write=l2_writes)
                continue
            # _decoded + _settle inlined for the common row (no L2 write): two calls
            # fewer per key; any failure takes the full path for its metrics and log.
            try:
                row = join.to_row(*hit)
            except Exception:
                results[key] = self._decoded(key, join, hit, l2_write=l2_writes)
                continue
            if l1_put is not None and policy.l1:
                ttl = policy.l1_ttl_s
                l1_put(key, row, cache.default_l1_ttl_s if ttl is None else ttl)
            results[key] = row
            add_built(key)
        if built:
            cache.flights.resolve_from(built, results)

    async def _read_mixed(
        self, store: KVStore, keys: list[CacheKey], owners: Mapping[CacheKey, JoinPlan],
        now_ms: int,
    ) -> list[Any]:
        """One store's reads when some keys are of aggregation groups: the versions of the
        others and the logs of those, concurrently; results in `keys` order, a log's as
        (LogRead, the cached batch part its lookup named as known, or None)."""
        versions: list[int] = []
        logs: list[int] = []
        for index, key in enumerate(keys):
            (logs if owners[key].aggregate is not None else versions).append(index)
        parts = self._cache.parts
        log_lookups = []
        held: list[CachedPart | None] = []
        for index in logs:
            key = keys[index]
            reader = owners[key].aggregate
            assert reader is not None
            lookup = reader.lookup(key[1], now_ms if key[2] is None else key[2])
            log_lookups.append(lookup)
            held.append(None if parts is None else reader.held(parts, lookup))
        # Known parts only when some are held: a call without them is the plain read.
        known = [AggregateReader.known(p) for p in held] if any(held) else None
        out: list[Found | tuple[LogRead, CachedPart | None] | None] = [None] * len(keys)
        if versions:
            version_lookups = [(owners[keys[i]].dataset, keys[i][1], keys[i][2]) for i in versions]
            found, read = await asyncio.gather(
                store.multi_get(version_lookups), store.read_logs(log_lookups, known)
            )
        else:
            found, read = [], await store.read_logs(log_lookups, known)
        if len(found) != len(versions) or len(read) != len(logs):
            raise StoreError(f"answered {len(found) + len(read)} results for {len(keys)} lookups")
        for index, hit in zip(versions, found, strict=True):
            out[index] = hit
        for index, log_read, part in zip(logs, read, held, strict=True):
            out[index] = (log_read, part)
        return out

    def _aggregated(
        self, key: CacheKey, join: JoinPlan, hit: tuple[LogRead, CachedPart | None], at_ms: int
    ) -> LookupResult:
        """The computed row of an aggregation group's key (ERROR when it cannot be)."""
        reader = join.aggregate
        assert reader is not None
        read, held = hit
        try:
            row = reader.row(read, at_ms, key[1], held, self._cache.parts)
        except Exception as exc:
            # A batch part or event that does not decode, too many events, a value that
            # does not fit: this key's group is ERROR, never cached.
            cause = "too_many_events" if isinstance(exc, TooManyEvents) else "aggregate_state"
            self._metrics.decode_failed(join.group.name, cause)
            self._metrics.log_limited(
                log, f"decode:{join.group.name}:{cause}",
                "group %s: log of key %s cannot be served: %s", join.group.name,
                key[1].hex(), exc,
            )
            self._cache.flights.resolve(key, ERROR)
            return ERROR
        self._settle(key, join, row, None)
        return row

    def store_handle(self, name: str) -> StoreHandle | None:
        """The handle of store `name`, None when this process did not open it."""
        return self._stores.get(name)

    def forget(self, keys: Sequence[bytes], cache_ns: str) -> None:
        """Drop the latest-read vectors of `keys` of one group from L1 (after a write to them).

        Point-in-time reads cached in L1 are kept for their TTL.
        """
        if self._cache.l1_enabled:
            self._cache.l1.discard([(cache_ns, key, None) for key in keys])

    def guard(self, name: str) -> StoreGuard:
        """The breaker and in-flight bound of store `name` (built on first use)."""
        guard = self._guards.get(name)
        if guard is None:
            handle = self._stores[name]
            guard = self._guards[name] = StoreGuard(
                name, self._metrics.registry,
                max_in_flight=handle.max_in_flight,
                breaker_failures=handle.breaker_failures,
                breaker_cooldown_s=handle.breaker_cooldown_s,
            )
            # The store's requests and latency children, looked up once (labels() hashes).
            guard.store_metrics = (
                self._metrics.store_requests.labels(name),
                self._metrics.store_latency.labels(name),
            )
        return guard

    def _failed(
        self,
        name: str,
        keys: list[CacheKey],
        results: dict[CacheKey, LookupResult],
        exc: BaseException,
        started: float,
        *,
        timed_out: bool,
        abandoned: bool = False,
        counted: bool = True,
    ) -> None:
        """A store read failed: its keys are ERROR here and for the requests waiting on them.

        `counted` False: the store was never called (breaker open, no free slot), so the
        store's request and error counters are left alone.
        """
        if counted:
            elapsed = time.perf_counter() - started if started else 0.0
            self._metrics.store_failed(name, timed_out, elapsed)
        self._metrics.log_limited(
            log, f"store:{name}", "store %s failed for %d lookups: %s", name, len(keys),
            "timeout" if timed_out else repr(exc),
        )
        flights = self._cache.flights
        # Out of *our* deadline, not the store's timeout: waiters with more time left
        # retry instead of inheriting our ERROR.
        shared: BaseException = (
            FetchAbandoned(f"owner's deadline ran out reading store {name!r}") if abandoned
            else exc
        )
        for key in keys:
            flights.fail(key, shared)
            results[key] = ERROR

    def _decoded(
        self,
        key: CacheKey,
        join: JoinPlan,
        hit: Found,
        l2_write: list[tuple[CacheKey, Found | None]] | None,
    ) -> LookupResult:
        value, event_ms = hit
        try:
            row: LookupResult = join.to_row(value, event_ms)
        except Exception as exc:
            # Corrupt bytes, an unknown fingerprint or a record that does not fit the shape:
            # this entity's group is ERROR; never cached, so a fixed row is served at once.
            cause = decode_cause(value, exc)
            self._metrics.decode_failed(join.group.name, cause)
            self._metrics.log_limited(
                log, f"decode:{join.group.name}:{cause}",
                "group %s: value of key %s does not decode: %s", join.group.name,
                key[1].hex(), exc,
            )
            self._cache.flights.resolve(key, ERROR)
            return ERROR
        self._settle(key, join, row, l2_write)
        if l2_write is not None and join.cache.l2:
            l2_write.append((key, hit))
        return row

    def _settle(
        self,
        key: CacheKey,
        join: JoinPlan,
        result: LookupResult,
        l2_write: list[tuple[CacheKey, Found | None]] | None,
    ) -> None:
        cache = self._cache
        if cache.l1_enabled and join.cache.l1:
            if isinstance(result, GroupRow):
                ttl = join.cache.l1_ttl_s
                cache.l1.put(key, result, cache.default_l1_ttl_s if ttl is None else ttl)
            else:
                cache.l1.put(key, result, cache.negative_ttl_s)
                if l2_write is not None and join.cache.l2:
                    l2_write.append((key, None))
        elif l2_write is not None and join.cache.l2 and not isinstance(result, GroupRow):
            l2_write.append((key, None))
        cache.flights.resolve(key, result)

    async def close(self) -> None:
        """Wait for background cache writes; the stores are closed by their owner."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
