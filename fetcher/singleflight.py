"""Single-flight: concurrent misses for the same key make one backend fetch.

The first caller to claim a key owns it and fetches it; later callers get a
future that the owner resolves (with the value) or fails (with the error). Each
waiter gets its own future, so a waiter cancelled while awaiting cancels only
itself, never the fetch the others wait on. The owner is the asyncio task that
claimed the key; if it ends without resolving (cancelled because its client went
away, or a bug), `owning()` / `release_all()` fail its waiters with
FetchAbandoned and the next caller becomes the owner.

Usage by the fetch engine::

    owned, waiting = flight.claim(keys)
    with flight.owning([keys[i] for i in owned]):
        ...fetch, then flight.resolve(key, value) / resolve_many(...) or flight.fail(key, exc)
    values = [await w for _, w in waiting]  # after resolving: a repeated key waits on us
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from fetcher.cache_key import CacheKey


class FetchAbandoned(Exception):
    """The owner of an in-flight fetch ended without a result; the waiter may retry."""


class _Flight:
    """One in-flight fetch: the task that owns it and the futures waiting on it."""

    __slots__ = ("owner", "waiters")

    def __init__(self, owner: asyncio.Task[object] | None) -> None:
        self.owner = owner
        self.waiters: list[asyncio.Future[object]] = []


class SingleFlight:
    """Coalesces concurrent fetches of the same CacheKey within one event loop."""

    __slots__ = ("_flights", "coalesced")

    def __init__(self) -> None:
        self._flights: dict[CacheKey, _Flight] = {}
        # Lookups answered by another caller's fetch instead of a fetch of their own.
        self.coalesced = 0

    def claim(
        self, keys: Sequence[CacheKey]
    ) -> tuple[list[int], list[tuple[int, asyncio.Future[object]]]]:
        """Split `keys` into the indexes this task must fetch and (index, future) to await.

        A key repeated in `keys` is owned once; its repeats come back as waiters on
        the caller's own fetch, so await them only after resolving.
        """
        flights = self._flights
        owner = asyncio.current_task()
        owned: list[int] = []
        waiting: list[tuple[int, asyncio.Future[object]]] = []
        loop: asyncio.AbstractEventLoop | None = None
        for index, key in enumerate(keys):
            flight = flights.get(key)
            if flight is None:
                flights[key] = _Flight(owner)
                owned.append(index)
            else:
                if loop is None:
                    loop = asyncio.get_running_loop()
                future: asyncio.Future[object] = loop.create_future()
                flight.waiters.append(future)
                waiting.append((index, future))
        self.coalesced += len(waiting)
        return owned, waiting

    def resolve(self, key: CacheKey, value: object) -> None:
        """Hand `value` to every waiter of `key` and end its flight (no-op if none)."""
        flight = self._flights.pop(key, None)
        if flight is not None and flight.waiters:
            _resolve_waiters(flight, value)

    def resolve_many(self, items: Iterable[tuple[CacheKey, object]]) -> None:
        """resolve() each (key, value), in one call for a batch."""
        pop = self._flights.pop
        for key, value in items:
            flight = pop(key, None)
            if flight is not None and flight.waiters:
                _resolve_waiters(flight, value)

    def fail(self, key: CacheKey, exc: BaseException) -> None:
        """Raise `exc` in every waiter of `key` and end its flight (no-op if none)."""
        flight = self._flights.pop(key, None)
        if flight is not None:
            _fail_waiters(flight, exc)

    def release_all(self, keys: Sequence[CacheKey], exc: BaseException | None = None) -> int:
        """Fail the flights of `keys` still owned by the current task; return how many.

        Waiters get `exc`, or FetchAbandoned when None. Flights already resolved,
        or since claimed by another task, are left alone.
        """
        flights = self._flights
        owner = asyncio.current_task()
        released = 0
        for key in keys:
            flight = flights.get(key)
            if flight is not None and flight.owner is owner:
                del flights[key]
                if flight.waiters:  # build no exception when nobody waits
                    _fail_waiters(flight, exc if exc is not None else FetchAbandoned(key))
                released += 1
        return released

    @contextmanager
    def owning(self, keys: Sequence[CacheKey]) -> Iterator[None]:
        """Release, on exit, the flights of `keys` the current task did not resolve.

        An exception (cancellation included) is chained into the FetchAbandoned the
        waiters get, then propagates; a normal exit with keys left unresolved also
        releases them so no waiter hangs.
        """
        try:
            yield
        except BaseException as exc:
            abandoned = FetchAbandoned(f"owner ended with {type(exc).__name__}: {exc}")
            abandoned.__cause__ = exc
            self.release_all(keys, abandoned)
            raise
        else:
            self.release_all(keys)

    def in_flight(self, key: CacheKey) -> bool:
        """Tell whether a fetch of `key` is in flight."""
        return key in self._flights

    def __len__(self) -> int:
        """Number of keys in flight."""
        return len(self._flights)


def _resolve_waiters(flight: _Flight, value: object) -> None:
    for future in flight.waiters:
        if not future.done():  # a waiter cancelled meanwhile
            future.set_result(value)


def _fail_waiters(flight: _Flight, exc: BaseException) -> None:
    for future in flight.waiters:
        if not future.done():
            future.set_exception(exc)
            # Marks the exception retrieved: a waiter that went away without
            # awaiting must not log "exception was never retrieved"; one that
            # awaits still gets it raised.
            future.exception()
