"""Hypothesis over request messages against the real server: each answer is either the
correct vector (checked against the loaded truth) or the status code an oracle predicts,
with a message. The server process never dies and does not leak (RSS, fds, roughly).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.api._snapshot import build_snapshot
from fetcher.client import decode_vectors
from fetcher.types import KeyType
from fetcher.v1 import feature_service_pb2 as pb
from fetcher.v1 import feature_service_pb2_grpc as pb_grpc
from tests.property.conftest import MAX_BATCH, PropertyServer

INVALID = grpc.StatusCode.INVALID_ARGUMENT
MAX_KEY_BYTES = 64 * 1024
DAY_MS = 86_400_000
HYPOTHESIS = settings(max_examples=120, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.function_scoped_fixture,
                                             HealthCheck.too_slow])

GROUPS = ["user_profile", "merchant_stats", "place_visits"]
SERVICES = ["user_merchant", "user_place"]
KEY_NAMES = ["user_id", "merchant_id", "s2_cell_id", "place_id", "cell_id"]

int_keys = st.one_of(st.integers(1, 10_001), st.integers(-(2**63), 2**63 - 1))
str_keys = st.one_of(
    st.builds(lambda i: f"place-{i:05d}", st.integers(1, 2001)),
    st.text(max_size=30),
    st.just(""),
    st.just("é" * (MAX_KEY_BYTES // 2)),  # at the limit in UTF-8 bytes
    st.just("é" * (MAX_KEY_BYTES // 2 + 1)),  # one character beyond it
)
values = st.one_of(
    st.builds(lambda v: pb.Value(int64_value=v), int_keys),
    st.builds(lambda v: pb.Value(string_value=v), str_keys),
    st.builds(lambda v: pb.Value(bytes_value=v), st.binary(max_size=20)),
    st.just(pb.Value()),  # no value set at all
)
timestamps = st.one_of(
    st.none(),
    st.builds(lambda s, n: Timestamp(seconds=s, nanos=n),
              st.one_of(st.integers(0, 2_000_000_000), st.integers(-(2**40), 2**40)),
              st.one_of(st.integers(0, 999_999_999), st.integers(-(2**31), 2**31 - 1))),
)
key_maps = st.dictionaries(st.one_of(st.sampled_from(KEY_NAMES), st.text(max_size=8)), values,
                           max_size=4)
targets = st.one_of(
    st.tuples(st.sampled_from(["feature_group"]), st.sampled_from(GROUPS)),
    st.tuples(st.sampled_from(["feature_service"]), st.sampled_from(SERVICES)),
    st.tuples(st.sampled_from(["feature_group", "feature_service"]), st.text(max_size=12)),
    st.just((None, "")),
)


@pytest.fixture(scope="module")
def stub(prop_server: PropertyServer) -> Iterator[pb_grpc.FeatureServiceStub]:
    """A stub on a channel that allows large messages (batches at the limit)."""
    channel = grpc.insecure_channel(prop_server.server.target, options=[
        ("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)])
    yield pb_grpc.FeatureServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def usage_at_start(prop_server: PropertyServer) -> tuple[int, int]:
    """RSS (kB) and open fds of the server when this module starts."""
    return _usage(prop_server.server.process.pid)


def _usage(pid: int) -> tuple[int, int]:
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text()
               .splitlines() if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def _keys_problem(plan: Any, keys: Any) -> bool:
    """True when the oracle expects INVALID_ARGUMENT for this key map."""
    kinds = {KeyType.INT64: "int64_value", KeyType.STRING: "string_value",
             KeyType.BYTES: "bytes_value"}
    if set(keys) != {k.name for k in plan.request_keys}:
        return True
    for column in plan.request_keys:
        value = keys[column.name]
        if value.WhichOneof("kind") != kinds[column.type]:
            return True
        item = getattr(value, kinds[column.type])
        if isinstance(item, str):
            item = item.encode()
        if isinstance(item, bytes) and len(item) > MAX_KEY_BYTES:
            return True
    return False


def _at_problem(at: Timestamp | None, now_ms: int) -> bool:
    if at is None:
        return False
    if not 0 <= at.nanos <= 999_999_999 or at.seconds < 0:
        return True
    return at.seconds * 1000 + at.nanos // 1_000_000 > now_ms + DAY_MS


def _read_ms(at: Timestamp | None, now_ms: int) -> int:
    return now_ms if at is None else at.seconds * 1000 + at.nanos // 1_000_000


def _expect(prop: PropertyServer, kind: str | None, name: str, entities: list[Any],
            at: list[Timestamp | None], batch: bool) -> tuple[grpc.StatusCode, Any]:
    """The oracle: the status the server must answer, and the plan when OK."""
    if kind is None:
        return INVALID, None
    plans = build_snapshot(prop.truth.catalog).plans
    plan = (plans.groups if kind == "feature_group" else plans.services).get(name)
    if plan is None:
        return grpc.StatusCode.NOT_FOUND, None
    if batch and not 1 <= len(entities) <= MAX_BATCH:
        return INVALID, None
    now_ms = time.time_ns() // 1_000_000
    if any(_keys_problem(plan, keys) for keys in entities) or any(
        _at_problem(a, now_ms) for a in at
    ):
        return INVALID, None
    return grpc.StatusCode.OK, plan


def _check(prop: PropertyServer, call: Any, kind: str | None, name: str, entities: list[Any],
           at: list[Timestamp | None], batch: bool) -> None:
    code, _ = _expect(prop, kind, name, entities, at, batch)
    try:
        response = call()
    except grpc.RpcError as exc:
        assert exc.code() == code, f"{kind} {name!r}: got {exc.code()} {exc.details()!r}"
        assert exc.details(), "an error status without a message"
        return
    assert code is grpc.StatusCode.OK, f"{kind} {name!r}: OK, oracle expected {code}"
    vectors = list(response.vectors) if batch else [response.vector]
    rows = decode_vectors(response.metadata, vectors)
    now_ms = time.time_ns() // 1_000_000
    target = {"service" if kind == "feature_service" else "group": name}
    for row, keys, a in zip(rows, entities, at, strict=True):
        plain = {k: getattr(v, v.WhichOneof("kind")) for k, v in keys.items()}
        prop.truth.check(row, plain, _read_ms(a, now_ms), **target)


@HYPOTHESIS
@given(target=targets, keys=key_maps, at=timestamps)
def test_single_requests(prop_server: PropertyServer, stub: pb_grpc.FeatureServiceStub,
                         usage_at_start: tuple[int, int], target: tuple[str | None, str],
                         keys: dict[str, pb.Value], at: Timestamp | None) -> None:
    kind, name = target
    request = pb.GetFeaturesRequest(**({kind: name} if kind else {}))
    for key, value in keys.items():
        request.keys[key].CopyFrom(value)
    if at is not None:
        request.at.CopyFrom(at)
    _check(prop_server, lambda: stub.GetFeatures(request, timeout=10), kind, name, [keys],
           [at], batch=False)


@HYPOTHESIS
@given(target=targets, entities=st.one_of(
    st.lists(key_maps, max_size=4),
    st.integers(MAX_BATCH - 1, MAX_BATCH + 1).map(
        lambda n: [{"user_id": pb.Value(int64_value=i % 20 + 1),
                    "merchant_id": pb.Value(int64_value=7)} for i in range(n)]),
), at=timestamps, entity_at=st.lists(timestamps, max_size=4))
def test_batch_requests(prop_server: PropertyServer, stub: pb_grpc.FeatureServiceStub,
                        target: tuple[str | None, str], entities: list[dict[str, pb.Value]],
                        at: Timestamp | None, entity_at: list[Timestamp | None]) -> None:
    kind, name = target
    request = pb.GetBatchFeaturesRequest(**({kind: name} if kind else {}))
    ats: list[Timestamp | None] = []
    for index, keys in enumerate(entities):  # duplicates included: each is answered alone
        entity = request.entities.add()
        for key, value in keys.items():
            entity.keys[key].CopyFrom(value)
        own = entity_at[index] if index < len(entity_at) else None
        if own is not None:
            entity.at.CopyFrom(own)
        ats.append(own if own is not None else at)
    if at is not None:
        request.at.CopyFrom(at)
    # The request-level time is checked even when every entity has its own.
    checked_at = ats + ([at] if at is not None else [])
    code, _ = _expect(prop_server, kind, name, entities, checked_at, batch=True)
    if code is grpc.StatusCode.OK:
        _check(prop_server, lambda: stub.GetBatchFeatures(request, timeout=20), kind, name,
               entities, ats, batch=True)
    else:
        _check(prop_server, lambda: stub.GetBatchFeatures(request, timeout=20), kind, name,
               entities, checked_at, batch=True)


def test_no_leak_after_hostile_requests(
    prop_server: PropertyServer, usage_at_start: tuple[int, int]
) -> None:
    """Runs after the property tests of this module: the process is alive and did not grow."""
    assert prop_server.server.process.poll() is None
    rss, fds = _usage(prop_server.server.process.pid)
    rss0, fds0 = usage_at_start
    assert fds - fds0 < 20, (fds0, fds)
    assert rss - rss0 < 150_000, (rss0, rss)  # kB; the first batches warm caches and arenas
