"""Content checks: every system must return the bench data before it is measured.

A server that answers fast but wrong (NOT_FOUND, ERROR, stale values) would make any
number meaningless, so each system is asked for known users and every one of the
40 values, its status and its event time is compared with bench.data.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import grpc
import redis

from bench.data import GROUPS, KEY, SERVICE, DataSet, expected_vector, feature_names
from bench.procs import BenchError
from bench.redis_floor import latest_key, redis_key
from fetcher.types import Status
from fetcher.v1 import feature_service_pb2 as pb
from fetcher.v1 import feature_service_pb2_grpc as pb_grpc


def _check_vector(system: str, user: int, vector: pb.FeatureVector, event_ms: int) -> None:
    statuses = [Status(s) for s in vector.statuses]
    if any(s != Status.PRESENT for s in statuses):
        bad = sorted({s.name for s in statuses if s != Status.PRESENT})
        raise BenchError(f"{system}: user {user}: statuses {bad}, expected all PRESENT")
    if list(vector.double_values) != expected_vector(user):
        raise BenchError(
            f"{system}: user {user}: values {list(vector.double_values)[:3]}... differ from "
            f"the bench data {expected_vector(user)[:3]}..."
        )
    if list(vector.event_timestamps_ms) != [event_ms] * len(GROUPS):
        raise BenchError(
            f"{system}: user {user}: event times {list(vector.event_timestamps_ms)}, "
            f"expected {event_ms} for each group"
        )


def _entity(user: int) -> pb.Entity:
    return pb.Entity(keys={KEY: pb.Value(int64_value=user)})


def check_fetcher_api(system: str, target: str, users: Sequence[int], event_ms: int) -> None:
    """GetFeatures for the first user and GetBatchFeatures for all, every value compared."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.FeatureServiceStub(channel)
        single = stub.GetFeatures(
            pb.GetFeaturesRequest(
                feature_service=SERVICE, keys={KEY: pb.Value(int64_value=users[0])}
            ),
            timeout=10,
        )
        _check_vector(system, users[0], single.vector, event_ms)
        batch = stub.GetBatchFeatures(
            pb.GetBatchFeaturesRequest(
                feature_service=SERVICE, entities=[_entity(u) for u in users]
            ),
            timeout=30,
        )
    if len(batch.vectors) != len(users):
        raise BenchError(f"{system}: {len(batch.vectors)} vectors for {len(users)} entities")
    for user, vector in zip(users, batch.vectors, strict=True):
        _check_vector(system, user, vector, event_ms)
    names = list(batch.metadata.feature_names)
    expected_names = [n for g in GROUPS for n in feature_names(g)]
    if names != expected_names:
        raise BenchError(f"{system}: feature names {names[:3]}... expected {expected_names[:3]}...")


def fill(target: str, users: Sequence[int], ats: Sequence[int | None], batch: int = 500) -> int:
    """Read every user at every time in `ats` (None: latest) in batches; entities read."""
    read = 0
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.FeatureServiceStub(channel)
        for at in ats:
            for start in range(0, len(users), batch):
                request = pb.GetBatchFeaturesRequest(
                    feature_service=SERVICE,
                    entities=[_entity(u) for u in users[start : start + batch]],
                )
                if at is not None:
                    request.at.FromMilliseconds(at)
                response = stub.GetBatchFeatures(request, timeout=60)
                present = sum(
                    1 for v in response.vectors if all(s == Status.PRESENT for s in v.statuses)
                )
                if present != len(response.vectors):
                    raise BenchError(
                        f"fill of {target}: {len(response.vectors) - present} of "
                        f"{len(response.vectors)} entities not PRESENT (at={at})"
                    )
                read += len(response.vectors)
    return read


def check_redis(url: str, users: Sequence[int], data: DataSet) -> None:
    """The raw rows the floor reads decode (with the bench catalog) to the bench data."""
    from fetcher.catalog._loader import load_catalog

    catalog = load_catalog("bench/config/catalog")
    client = redis.Redis.from_url(url)
    try:
        for user in users:
            for index, group in enumerate(GROUPS):
                # GET of the latest key: the floor's (and the store's) read; it must
                # equal the newest version in the sorted set.
                member: bytes | None = client.get(  # type: ignore[assignment]
                    latest_key(f"bench_{group}", user)
                )
                newest: list[bytes] = client.zrange(  # type: ignore[assignment]
                    redis_key(f"bench_{group}", user), -1, -1
                )
                if member is None or newest != [member]:
                    raise BenchError(
                        f"redis floor: user {user} in {group}: latest key {member!r:.40}, "
                        f"newest version {newest!r:.60}"
                    )
                (event_ms,) = struct.unpack_from(">q", member)
                record = catalog.codecs[group].decode(member[8:])
                got = [record[n] for n in feature_names(group)]
                want = expected_vector(user)[index * 20 : (index + 1) * 20]
                if event_ms != data.event_ms or got != want:
                    raise BenchError(f"redis floor: user {user} {group}: row differs from the data")
    finally:
        client.close()
