"""Corrupt values in each store: that entity's group is ERROR, counted by cause; the rest right.

Corrupt rows are written for entities outside the demo range (users 20001.., merchants
5001..), in Redis (user_profile) and in the LMDB file the server reads (merchant_stats).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from fetcher.codec._avro import MARKER
from fetcher.codec._keys import key_encoder
from kvstores import EmbeddedStore, KVStore, RedisStore, Row
from tests.faults.harness import Caller, FaultServer, RedisServer, World
from tests.faults.report import record
from tests.faults.toxiproxy import Proxy
from tests.faults.truth import ERROR_OUTCOME, ResponseChecker

Corruptor = Callable[[World, str, int], bytes]


def _valid(world: World, group: str, n: int) -> bytes:
    row = world.rows[group][n % 100]
    return world.catalog.codecs[group].encode(row.record)


CORRUPTIONS: dict[str, tuple[str, Corruptor]] = {
    "random-bytes": ("bad_marker", lambda w, g, n: random.Random(n).randbytes(40)),
    "unknown-fingerprint": (
        "unknown_schema", lambda w, g, n: MARKER + random.Random(n).randbytes(8) + b"\x02\x04",
    ),
    "truncated-header": ("truncated_header", lambda w, g, n: MARKER + b"\x01\x02\x03"),
    "truncated-avro": ("corrupt_body", lambda w, g, n: _valid(w, g, n)[:14]),
    "trailing-garbage": ("corrupt_body", lambda w, g, n: _valid(w, g, n) + b"\x00\x01"),
    # Bytes written with another group's (registered) schema, which does not resolve.
    "incompatible-schema": (
        "incompatible_schema",
        lambda w, g, n: _valid(w, "place_visits", n),
    ),
}


async def _put(store: KVStore, world: World, group: str, key: int, value: bytes) -> None:
    spec = world.catalog.groups[group]
    encoded = key_encoder(spec.keys)([key])
    await store.multi_put([Row(spec.dataset, encoded, value, world.now_ms - 1000)])
    await store.close()


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.parametrize("group", ["user_profile", "merchant_stats"])
async def test_corrupt_value_is_error_for_that_group_only(
    server: FaultServer, proxy: Proxy, fault_redis: RedisServer, world: World,
    checker: ResponseChecker, corruption: str, group: str,
) -> None:
    cause, make = CORRUPTIONS[corruption]
    index = sorted(CORRUPTIONS).index(corruption)
    bad_user, bad_merchant = 20_001 + index, 5_001 + index
    bad_key = bad_user if group == "user_profile" else bad_merchant
    store: KVStore = (RedisStore(fault_redis.url) if group == "user_profile"
                      else EmbeddedStore(world.lmdb_path))
    await _put(store, world, group, bad_key, make(world, group, bad_key))
    before = server.metric("fetcher_decode_errors_total", group=group, cause=cause)
    # The corrupt entity next to good ones, in one batch and alone.
    entities = [
        {"user_id": bad_user if group == "user_profile" else 7,
         "merchant_id": bad_merchant if group == "merchant_stats" else 9},
        {"user_id": 10, "merchant_id": 20},
        {"user_id": 10_001, "merchant_id": 3},
    ]
    caller = Caller(server.target)
    try:
        batch = await caller.call(Caller.batch(entities, world.now_ms), 2.0)
        single = await caller.call(Caller.single(entities[0], world.now_ms), 2.0)
    finally:
        await caller.close()
    assert batch.response is not None and single.response is not None
    results = checker.check_response(batch.response, entities, world.now_ms,
                                     service="user_merchant", may_fail=(group,))
    (alone,) = checker.check_response(single.response, entities[:1], world.now_ms,
                                      service="user_merchant", may_fail=(group,))
    assert results[0][group] == ERROR_OUTCOME and alone[group] == ERROR_OUTCOME
    assert all(ERROR_OUTCOME not in r.values() for r in results[1:])
    # Counted once per value read, under its cause (decode failures are never cached).
    await asyncio.sleep(0)
    after = server.metric("fetcher_decode_errors_total", group=group, cause=cause)
    assert after - before == 2, (corruption, before, after)
    record(f"corrupt value: {corruption} in {group}", cause=cause, counted=after - before,
           other_entities_correct=len(entities) - 1, wrong_values=0)
