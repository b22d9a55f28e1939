"""SingleFlight: one fetch per key in flight, waiters served, owners that go away released."""

from __future__ import annotations

import asyncio
import gc
import random
from typing import Any

import pytest

from fetcher.cache import CacheKey, FetchAbandoned, SingleFlight


def key(n: int, at_ms: int | None = None) -> CacheKey:
    return ("users", n.to_bytes(8, "big"), at_ms)


async def test_first_caller_owns_later_callers_wait_for_its_value() -> None:
    flight = SingleFlight()
    owned, waiting = flight.claim([key(1), key(2)])
    assert (owned, waiting) == ([0, 1], [])
    owned2, waiting2 = flight.claim([key(2), key(3)])
    assert owned2 == [1]
    assert [i for i, _ in waiting2] == [0]
    flight.resolve(key(2), "v2")
    assert await waiting2[0][1] == "v2"
    assert not flight.in_flight(key(2))
    assert flight.coalesced == 1
    # Resolved: the next caller fetches again.
    assert flight.claim([key(2)]) == ([0], [])


async def test_fail_raises_the_owners_error_in_waiters() -> None:
    flight = SingleFlight()
    flight.claim([key(1)])
    _, waiting = flight.claim([key(1)])
    flight.fail(key(1), LookupError("store down"))
    with pytest.raises(LookupError, match="store down"):
        await waiting[0][1]
    assert len(flight) == 0


async def test_resolve_many_serves_each_key_its_value() -> None:
    flight = SingleFlight()
    flight.claim([key(1), key(2), key(3)])
    _, waiting = flight.claim([key(3), key(1)])
    flight.resolve_many([(key(1), "v1"), (key(2), "v2"), (key(3), "v3"), (key(9), "v9")])
    assert [await future for _, future in waiting] == ["v3", "v1"]
    assert len(flight) == 0


async def test_resolve_from_serves_waiters_and_ends_every_claim() -> None:
    flight = SingleFlight()
    flight.claim([key(1), key(2), key(3)])
    _, waiting = flight.claim([key(3), key(1)])
    values = {key(1): "v1", key(2): "v2", key(3): "v3", key(9): "v9"}
    flight.resolve_from([key(1), key(2), key(3), key(9)], values)
    assert [await future for _, future in waiting] == ["v3", "v1"]
    assert len(flight) == 0
    # Nobody waiting (the engine's usual case): the claims end all the same.
    flight.claim([key(4), key(5)])
    flight.resolve_from([key(4), key(5)], {key(4): "v4", key(5): "v5"})
    assert len(flight) == 0
    assert flight.claim([key(4)]) == ([0], [])


async def test_resolve_and_fail_without_a_flight_are_no_ops() -> None:
    flight = SingleFlight()
    flight.resolve(key(1), "v")
    flight.fail(key(1), RuntimeError())
    assert len(flight) == 0


async def test_repeated_key_in_one_claim_waits_on_the_callers_own_fetch() -> None:
    flight = SingleFlight()
    owned, waiting = flight.claim([key(1), key(1)])
    assert owned == [0]
    assert [i for i, _ in waiting] == [1]
    flight.resolve(key(1), "v")
    assert await waiting[0][1] == "v"


async def test_claims_with_nothing_in_flight_own_every_key_even_with_repeats() -> None:
    flight = SingleFlight()
    keys = [key(n) for n in range(50)]
    assert flight.claim(keys) == (list(range(50)), [])
    assert len(flight) == 50
    flight.resolve_from(keys, dict.fromkeys(keys, "v"))
    # A repeat among many keys: owned once, the repeat waits on our own fetch.
    owned, waiting = flight.claim([key(1), key(2), key(1), key(3)])
    assert owned == [0, 1, 3]
    assert [i for i, _ in waiting] == [2]
    assert len(flight) == 3


async def test_point_in_time_and_latest_are_separate_flights() -> None:
    flight = SingleFlight()
    owned, _ = flight.claim([key(1)])
    owned_at, waiting_at = flight.claim([key(1, at_ms=1500)])
    assert (owned, owned_at, waiting_at) == ([0], [0], [])


async def test_cancelled_owner_releases_waiters_promptly_and_a_new_caller_owns() -> None:
    flight = SingleFlight()
    claimed = asyncio.Event()

    async def owner() -> None:
        flight.claim([key(1), key(2)])
        with flight.owning([key(1), key(2)]):
            claimed.set()
            flight.resolve(key(2), "v2")
            await asyncio.sleep(3600)  # the backend is slow; the client goes away

    task = asyncio.create_task(owner())
    await claimed.wait()
    owned, waiting = flight.claim([key(1)])
    assert owned == []
    task.cancel()
    with pytest.raises(FetchAbandoned) as info:
        await asyncio.wait_for(waiting[0][1], timeout=1)
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert flight.claim([key(1)]) == ([0], [])


async def test_owner_exiting_without_resolving_releases_its_keys() -> None:
    flight = SingleFlight()
    flight.claim([key(1)])
    _, waiting = flight.claim([key(1)])
    with flight.owning([key(1)]):
        pass  # forgot to resolve
    with pytest.raises(FetchAbandoned):
        await waiting[0][1]
    assert len(flight) == 0


async def test_owner_error_is_chained_into_fetch_abandoned() -> None:
    flight = SingleFlight()
    flight.claim([key(1)])
    _, waiting = flight.claim([key(1)])
    with pytest.raises(ZeroDivisionError), flight.owning([key(1)]):
        raise ZeroDivisionError
    with pytest.raises(FetchAbandoned) as info:
        await waiting[0][1]
    assert isinstance(info.value.__cause__, ZeroDivisionError)


async def test_release_leaves_a_flight_claimed_since_by_another_task() -> None:
    flight = SingleFlight()
    resolved = asyncio.Event()
    reclaimed = asyncio.Event()

    async def first_owner() -> int:
        flight.claim([key(1)])
        flight.resolve(key(1), "v")
        resolved.set()
        await reclaimed.wait()
        return flight.release_all([key(1)])  # key 1 now belongs to the other task

    async def second_owner() -> list[tuple[int, asyncio.Future[object]]]:
        await resolved.wait()
        owned, _ = flight.claim([key(1)])
        assert owned == [0]
        reclaimed.set()
        return flight.claim([key(1)])[1]

    released, waiting = await asyncio.gather(first_owner(), second_owner())
    assert released == 0
    assert flight.in_flight(key(1))
    flight.resolve(key(1), "fresh")
    assert await waiting[0][1] == "fresh"


async def test_release_all_with_an_explicit_error() -> None:
    flight = SingleFlight()
    flight.claim([key(1), key(2)])
    _, waiting = flight.claim([key(1)])
    assert flight.release_all([key(1), key(2)], TimeoutError("deadline")) == 2
    with pytest.raises(TimeoutError, match="deadline"):
        await waiting[0][1]


async def test_a_cancelled_waiter_does_not_disturb_the_others() -> None:
    flight = SingleFlight()
    flight.claim([key(1)])
    _, (first,) = flight.claim([key(1)])
    _, (second,) = flight.claim([key(1)])
    waiter = asyncio.create_task(asyncio.wait_for(first[1], timeout=10))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert flight.in_flight(key(1))
    flight.resolve(key(1), "v")
    assert await second[1] == "v"


async def test_failed_futures_nobody_awaits_log_nothing() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        flight = SingleFlight()
        flight.claim([key(1), key(2)])
        flight.claim([key(1), key(2)])  # waiters that never await
        flight.fail(key(1), RuntimeError("boom"))
        flight.release_all([key(2)])
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert reported == []


async def test_each_waiter_gets_the_value_of_its_own_key() -> None:
    flight = SingleFlight()
    rng = random.Random(7)
    fetches: dict[CacheKey, int] = {}

    async def request(keys: list[CacheKey]) -> None:
        owned, waiting = flight.claim(keys)
        with flight.owning([keys[i] for i in owned]):
            await asyncio.sleep(rng.random() / 1000)
            for i in owned:
                fetches[keys[i]] = fetches.get(keys[i], 0) + 1
                flight.resolve(keys[i], ("value-of", keys[i]))
        for i, future in waiting:
            assert await future == ("value-of", keys[i])

    batches = [
        [key(rng.randrange(50), rng.choice([None, 1000])) for _ in range(rng.randrange(1, 20))]
        for _ in range(300)
    ]
    await asyncio.gather(*(request(batch) for batch in batches))
    assert len(flight) == 0
    requested = sum(len(batch) for batch in batches)
    assert sum(fetches.values()) + flight.coalesced == requested
    assert flight.coalesced > 0
