"""Single-flight: concurrent misses for the same key make one backend fetch.

The first caller to claim a key owns it and fetches it; later callers get a
future that the owner resolves (with the value) or fails (with the error). Each
waiter gets its own future, so a waiter cancelled while awaiting cancels only
itself, never the fetch the others wait on. The owner is the asyncio task that
claimed the key; if it ends without resolving (cancelled because its client went
away, or a bug), `owning()` / `abandon()` / `release_all()` fail its waiters with
FetchAbandoned and the next caller becomes the owner.

Usage by the fetch engine::

    owned, waiting = flight.claim(keys)
    with flight.owning([keys[i] for i in owned]):
        ...fetch, then flight.resolve(key, value) / resolve_many(...) or flight.fail(key, exc)
    values = [await w for _, w in waiting]  # after resolving: a repeated key waits on us
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from fetcher.cache._keys import CacheKey

# "No flight" for dict.pop: an owner may be None (claimed outside a task).
_NONE: object = object()


class FetchAbandoned(Exception):
    """The owner of an in-flight fetch ended without a result; the waiter may retry."""


class SingleFlight:
    """Coalesces concurrent fetches of the same CacheKey within one event loop."""

    # Owners and waiters live apart: most keys are never waited on, so a claim stores
    # only the owner task (no per-key record, no future) and the waiter lists exist
    # only for keys someone actually waits on.
    __slots__ = ("_owners", "_waiters", "coalesced")

    def __init__(self) -> None:
        self._owners: dict[CacheKey, asyncio.Task[object] | None] = {}
        self._waiters: dict[CacheKey, list[asyncio.Future[object]]] = {}
        # Lookups answered by another caller's fetch instead of a fetch of their own.
        self.coalesced = 0

    def claim(
        self, keys: Sequence[CacheKey]
    ) -> tuple[list[int], list[tuple[int, asyncio.Future[object]]]]:
        """Split `keys` into the indexes this task must fetch and (index, future) to await.

        A key repeated in `keys` is owned once; its repeats come back as waiters on
        the caller's own fetch, so await them only after resolving.
        """
        owners = self._owners
        owner = asyncio.current_task()
        waiting: list[tuple[int, asyncio.Future[object]]] = []
        if not owners and len(keys) == 1:
            # The uncontended single lookup: nothing in flight, nothing to wait on.
            owners[keys[0]] = owner
            return [0], waiting
        if not owners:
            # Nothing in flight (no concurrent request): every key is ours, claimed in
            # one C-level update, unless `keys` repeats one (then the loop below).
            owners.update(dict.fromkeys(keys, owner))
            if len(owners) == len(keys):
                return list(range(len(keys))), waiting
            owners.clear()
        owned: list[int] = []
        loop: asyncio.AbstractEventLoop | None = None
        for index, key in enumerate(keys):
            if key not in owners:
                owners[key] = owner
                owned.append(index)
            else:
                if loop is None:
                    loop = asyncio.get_running_loop()
                future: asyncio.Future[object] = loop.create_future()
                self._waiters.setdefault(key, []).append(future)
                waiting.append((index, future))
        self.coalesced += len(waiting)
        return owned, waiting

    def resolve(self, key: CacheKey, value: object) -> None:
        """Hand `value` to every waiter of `key` and end its flight (no-op if none)."""
        if self._owners.pop(key, _NONE) is not _NONE and self._waiters:
            waiters = self._waiters.pop(key, None)
            if waiters:
                _resolve_waiters(waiters, value)

    def resolve_many(self, items: Iterable[tuple[CacheKey, object]]) -> None:
        """resolve() each (key, value), in one call for a batch."""
        pop = self._owners.pop
        all_waiters = self._waiters
        for key, value in items:
            if pop(key, _NONE) is not _NONE and all_waiters:
                waiters = all_waiters.pop(key, None)
                if waiters:
                    _resolve_waiters(waiters, value)

    def resolve_from(self, keys: Iterable[CacheKey], values: Mapping[CacheKey, object]) -> None:
        """resolve(key, values[key]) for each of `keys`, in one call for a batch."""
        pop = self._owners.pop
        all_waiters = self._waiters
        if not all_waiters:
            # Nobody waits on anything (the usual case): only the claims end.
            for key in keys:
                pop(key, None)
            return
        for key in keys:
            if pop(key, _NONE) is not _NONE and all_waiters:
                waiters = all_waiters.pop(key, None)
                if waiters:
                    _resolve_waiters(waiters, values[key])

    def fail(self, key: CacheKey, exc: BaseException) -> None:
        """Raise `exc` in every waiter of `key` and end its flight (no-op if none)."""
        if self._owners.pop(key, _NONE) is not _NONE and self._waiters:
            waiters = self._waiters.pop(key, None)
            if waiters:
                _fail_waiters(waiters, exc)

    def release_all(self, keys: Sequence[CacheKey], exc: BaseException | None = None) -> int:
        """Fail the flights of `keys` still owned by the current task; return how many.

        Waiters get `exc`, or FetchAbandoned when None. Flights already resolved,
        or since claimed by another task, are left alone.
        """
        owners = self._owners
        if not owners:
            return 0  # everything resolved (the normal end of a fetch)
        owner = asyncio.current_task()
        released = 0
        for key in keys:
            if key in owners and owners[key] is owner:
                del owners[key]
                waiters = self._waiters.pop(key, None)
                if waiters:  # build no exception when nobody waits
                    _fail_waiters(waiters, exc if exc is not None else FetchAbandoned(key))
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
            self.abandon(keys, exc)
            raise
        else:
            self.release_all(keys)

    def abandon(self, keys: Sequence[CacheKey], exc: BaseException) -> None:
        """The owner of `keys` ended with `exc`: its unresolved keys' waiters get FetchAbandoned.

        What owning() does on an exception, for callers that skip the context manager.
        """
        abandoned = FetchAbandoned(f"owner ended with {type(exc).__name__}: {exc}")
        abandoned.__cause__ = exc
        self.release_all(keys, abandoned)

    def in_flight(self, key: CacheKey) -> bool:
        """Tell whether a fetch of `key` is in flight."""
        return key in self._owners

    def __len__(self) -> int:
        """Number of keys in flight."""
        return len(self._owners)


def _resolve_waiters(waiters: list[asyncio.Future[object]], value: object) -> None:
    for future in waiters:
        if not future.done():  # a waiter cancelled meanwhile
            future.set_result(value)


def _fail_waiters(waiters: list[asyncio.Future[object]], exc: BaseException) -> None:
    for future in waiters:
        if not future.done():
            future.set_exception(exc)
            # Marks the exception retrieved: a waiter that went away without
            # awaiting must not log "exception was never retrieved"; one that
            # awaits still gets it raised.
            future.exception()
