"""The feature log's test harness: the demo catalog on a real embedded store, the servicer
called in process, a FeatureLog with a real FileSink (or a test sink) in a temp dir."""

from __future__ import annotations

import contextvars
import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fetcher.api._service import FeatureServicer
from fetcher.api._snapshot import Snapshot, build_snapshot
from fetcher.client import decode_vectors, event_value, key_value
from fetcher.config import FeatureLogSettings
from fetcher.featurelog import FeatureLog, LogBatch, closed_files, file_schema, read_log_file
from fetcher.v1 import feature_service_pb2 as pb
from tests.unit.fetch_support import MINUTE_MS, FetchHarness, demo_catalog, now_ms, record

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("test_request_id", default="")


class Context:
    """The part of grpc.aio.ServicerContext the feature RPCs touch."""

    def time_remaining(self) -> float:
        return 5.0

    async def abort(self, code: Any, details: str) -> None:
        raise AssertionError(f"aborted: {code} {details}")


def demo_snapshot_with(sample_percent: dict[str, float]) -> Snapshot:
    """The demo catalog with the given services' sample_percent."""
    catalog = demo_catalog()
    services = {name: dataclasses.replace(s, sample_percent=sample_percent.get(name, 100.0))
                for name, s in catalog.services.items()}
    return build_snapshot(dataclasses.replace(catalog, services=services))


class BlockingSink:
    """A sink whose write waits until released: the writer thread stuck on a slow disk."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.batches: list[LogBatch] = []
        self.closed = False

    def write(self, batch: LogBatch) -> None:
        self.entered.set()
        self.release.wait(60)
        self.batches.append(batch)

    def tick(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class LogHarness:
    """Servicer + engine over the demo data + FeatureLog, with the responses it sent."""

    def __init__(self, root: Path, snapshot: Snapshot, *, queue_size: int = 10_000,
                 sink: Any | None = None, max_file_bytes: int = 1 << 30,
                 max_file_seconds: float = 3600.0,
                 log_settings: dict[str, Any] | None = None) -> None:
        """`log_settings`: more FeatureLogSettings fields (sink="kafka", kafka_topic=...)."""
        self.root = root
        self.h = FetchHarness(root / "stores", snapshot)
        self.settings = dataclasses.replace(
            FeatureLogSettings(True, str(root / "log"), max_file_bytes, max_file_seconds,
                               queue_size), **(log_settings or {}))
        self.log = FeatureLog(self.settings, self.h.metrics, request_id=REQUEST_ID.get,
                              sink=sink, drain_interval_s=0.05)
        self.servicer = FeatureServicer(lambda: self.h.snapshot, self.h.engine, self.h.metrics,
                                        max_batch_entities=1000, served_log=self.log)
        self.context = Context()

    async def fill(self, users: int = 60, merchants: int = 30) -> None:
        """Demo rows: users 0..users-1 (some stale), merchants 0..merchants-1."""
        now = now_ms()
        for u in range(users):
            age = 8 * 86_400_000 if u % 7 == 3 else MINUTE_MS  # max age 7 days: stale
            await self.h.write("user_profile", [u], record(self.h.group("user_profile"), u),
                               now - age)
        for m in range(merchants):
            await self.h.write("merchant_stats", [m],
                               record(self.h.group("merchant_stats"), m), now - MINUTE_MS)

    async def get(self, service: str, keys: dict[str, Any], rid: str,
                  context: dict[str, Any] | None = None) -> pb.GetFeaturesResponse:
        """GetFeatures through the servicer with request id `rid` (and request-time values)."""
        request = pb.GetFeaturesRequest(feature_service=service,
                                        keys={k: key_value(v) for k, v in keys.items()})
        for name, value in (context or {}).items():
            request.context[name].CopyFrom(event_value(value))
        token = REQUEST_ID.set(rid)
        try:
            wire = await self.servicer.get_features_wire(request, self.context)  # type: ignore[arg-type]
        finally:
            REQUEST_ID.reset(token)
        return pb.GetFeaturesResponse.FromString(wire)

    async def batch(self, service: str, entities: Sequence[dict[str, Any]], rid: str,
                    contexts: Sequence[dict[str, Any]] | None = None,
                    ) -> pb.GetBatchFeaturesResponse:
        """GetBatchFeatures through the servicer with request id `rid` (and each entity's
        request-time values)."""
        request = pb.GetBatchFeaturesRequest(
            feature_service=service,
            entities=[pb.Entity(keys={k: key_value(v) for k, v in e.items()})
                      for e in entities])
        for entity, values in zip(request.entities, contexts or [], strict=False):
            for name, value in values.items():
                entity.context[name].CopyFrom(event_value(value))
        token = REQUEST_ID.set(rid)
        try:
            wire = await self.servicer.get_batch_features_wire(request, self.context)  # type: ignore[arg-type]
        finally:
            REQUEST_ID.reset(token)
        return pb.GetBatchFeaturesResponse.FromString(wire)

    def records(self, service: str) -> list[dict[str, Any]]:
        """Every record of the closed files of `service`, as Python dicts."""
        out: list[dict[str, Any]] = []
        root = Path(self.settings.directory)
        for f in closed_files(root, service):
            table, malformed = read_log_file(f.path, file_schema(root, f))
            assert malformed == 0, f.path
            out += table.to_pylist()
        return out

    async def close(self) -> None:
        await self.log.close()
        await self.h.close()


def expected_record(response_metadata: Any, vector: Any) -> dict[str, Any]:
    """What a record must hold of one served vector: statuses, values, event times (ms)."""
    (row,) = decode_vectors(response_metadata, [vector])
    return {
        "statuses": {n: fv.status.name for n, fv in row.items()},
        "values": {n: (fv.value if fv.status.name == "PRESENT" else None)
                   for n, fv in row.items()},
        "event_ms": {n: fv.event_ms or None for n, fv in row.items()},
    }


def record_of(rec: dict[str, Any], groups: Sequence[str],
              feature_groups: Sequence[int]) -> dict[str, Any]:
    """A logged record in expected_record's form (event times per feature, in ms)."""
    times = {g: (None if t is None else int(t.timestamp() * 1000))
             for g, t in rec["event_times"].items()}
    names = list(rec["values"])
    return {
        "statuses": dict(rec["statuses"]),
        "values": {n: _plain(v) for n, v in rec["values"].items()},
        "event_ms": {n: times[groups[feature_groups[i]]] for i, n in enumerate(names)},
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def oracle_kept(service: str, keys: Sequence[tuple[str, Any]], percent: float) -> bool:
    """The sampling rule as docs/operations.md states it, written independently of
    fetcher.featurelog: `keys` are (type, value) in the service's request key order."""
    import hashlib
    import math
    import struct

    parts = []
    for kind, value in keys:
        if kind == "int64":
            parts.append(struct.pack(">q", value))
        else:
            data = value.encode("utf-8") if kind == "string" else value
            parts.append(struct.pack(">I", len(data)) + data)
    digest = hashlib.sha256(service.encode("utf-8") + b"\x00" + b"".join(parts)).digest()
    bucket = int.from_bytes(digest[:8], "big") % 1_000_000
    return bucket < math.floor(percent * 10_000 + 0.5)


def files_matching(directory: str, pattern: str) -> list[Path]:
    """Files under `directory` whose names match `pattern` (any depth)."""
    return list(Path(directory).rglob(pattern))
