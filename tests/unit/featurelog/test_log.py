"""The feature log behind the servicer: exactly the sampled entities are logged, each equal
to what was sent; a full queue drops and counts without making answers wait; close writes
what is queued."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fetcher.featurelog import FeatureLog, closed_files, read_logs
from tests.unit.derive_support import NAMES, derived_snapshot
from tests.unit.featurelog.support import (
    BlockingSink,
    LogHarness,
    demo_snapshot_with,
    expected_record,
    files_matching,
    oracle_kept,
    record_of,
)

SERVICE = "user_merchant"


def _sample(h: LogHarness, name: str, labels: dict[str, str]) -> float:
    value = h.h.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_sampled_single_requests_are_exactly_the_rules_entities(tmp_path: Path) -> None:
    h = LogHarness(tmp_path, demo_snapshot_with({SERVICE: 50.0}))
    await h.log.start()
    await h.fill()
    sent: dict[str, Any] = {}
    for i in range(300):
        keys = {"user_id": i % 75, "merchant_id": i % 35}  # some of both are not stored
        sent[f"r{i}"] = (keys, await h.get(SERVICE, keys, f"r{i}"))
    await h.close()
    records = h.records(SERVICE)
    kept = {rid for rid, (keys, _) in sent.items()
            if oracle_kept(SERVICE, [("int64", keys["user_id"]), ("int64", keys["merchant_id"])],
                           50.0)}
    assert 100 < len(kept) < 200  # about half
    assert {r["request_id"] for r in records} == kept
    assert len(records) == len(kept)
    version = h.h.snapshot.catalog.version
    for rec in records:
        keys, response = sent[rec["request_id"]]
        assert rec["keys"] == keys
        assert (rec["entity"], rec["config_version"], rec["at"]) == (0, version, None)
        meta = response.metadata
        assert record_of(rec, meta.groups, meta.feature_groups) == expected_record(
            meta, response.vector)
    statuses = {s for rec in records for s in rec["statuses"].values()}
    assert {"PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"} <= statuses
    assert _sample(h, "fetcher_feature_log_records_total", {"service": SERVICE}) == len(kept)


async def test_batches_are_sampled_per_entity_in_the_writer(tmp_path: Path) -> None:
    h = LogHarness(tmp_path, demo_snapshot_with({SERVICE: 50.0}))
    await h.log.start()
    await h.fill()
    responses = {}
    for b in range(10):
        entities = [{"user_id": b * 20 + i, "merchant_id": i} for i in range(20)]
        responses[f"b{b}"] = (entities, await h.batch(SERVICE, entities, f"b{b}"))
    await h.close()
    records = h.records(SERVICE)
    want = {(rid, i) for rid, (entities, _) in responses.items()
            for i, e in enumerate(entities)
            if oracle_kept(SERVICE, [("int64", e["user_id"]), ("int64", e["merchant_id"])], 50.0)}
    assert {(r["request_id"], r["entity"]) for r in records} == want
    for rec in records:
        entities, response = responses[rec["request_id"]]
        assert rec["keys"] == entities[rec["entity"]]
        meta = response.metadata
        assert record_of(rec, meta.groups, meta.feature_groups) == expected_record(
            meta, response.vectors[rec["entity"]])


async def test_groups_and_services_at_zero_percent_are_not_logged(tmp_path: Path) -> None:
    h = LogHarness(tmp_path, demo_snapshot_with({SERVICE: 0.0}))
    await h.log.start()
    await h.fill()
    from fetcher.client import key_value
    from fetcher.v1 import feature_service_pb2 as pb

    for u in range(20):
        await h.get(SERVICE, {"user_id": u, "merchant_id": u}, f"s{u}")
        await h.servicer.get_features_wire(
            pb.GetFeaturesRequest(feature_group="user_profile", keys={"user_id": key_value(u)}),
            h.context)  # type: ignore[arg-type]
    await h.close()
    assert files_matching(h.settings.directory, "*.parquet") == []
    assert h.log.pending == 0


async def test_a_full_queue_drops_and_counts_without_making_answers_wait(
    tmp_path: Path,
) -> None:
    sink = BlockingSink()
    h = LogHarness(tmp_path, demo_snapshot_with({}), queue_size=10, sink=sink)
    await h.log.start()
    await h.fill(users=5, merchants=5)
    try:
        await h.get(SERVICE, {"user_id": 1, "merchant_id": 1}, "first")
        # The writer takes the first record and blocks in the sink (a disk that hangs).
        assert await asyncio.to_thread(sink.entered.wait, 30)
        answered = 0
        for i in range(50):
            response = await h.get(SERVICE, {"user_id": i % 5, "merchant_id": 2}, f"q{i}")
            answered += len(response.vector.statuses) > 0
        # Every answer came back while the writer was still stuck: nothing waited for it.
        assert answered == 50 and not sink.release.is_set() and not sink.batches
        # The bound counts the vector the writer holds: it is not written yet.
        assert h.log.pending == 10
        dropped = {"service": SERVICE, "reason": "queue_full"}
        assert _sample(h, "fetcher_feature_log_dropped_total", dropped) == 41
        assert _sample(h, "fetcher_feature_log_queue_records", {}) == 10
        # A batch that does not fit is dropped whole (its sampling is not decided yet).
        await h.batch(SERVICE, [{"user_id": 1, "merchant_id": 1}] * 3, "batch")
        assert _sample(h, "fetcher_feature_log_dropped_total", dropped) == 44
    finally:
        sink.release.set()
        await h.close()
    rows = sum(b.records.num_rows for b in sink.batches)
    assert rows == 10 and sink.closed  # the first one, then the nine queued
    ids = [rid for b in sink.batches for rid in b.records.column("request_id").to_pylist()]
    assert ids == ["first"] + [f"q{i}" for i in range(9)]


async def test_close_writes_the_queue_and_later_requests_are_ignored(tmp_path: Path) -> None:
    h = LogHarness(tmp_path, demo_snapshot_with({}))
    await h.fill(users=5, merchants=5)
    h.log._interval = 3600.0  # never drains by itself: close must write the queue
    await h.log.start()
    for i in range(5):
        await h.get(SERVICE, {"user_id": i, "merchant_id": i}, f"c{i}")
    assert h.log.pending == 5
    await h.log.close()
    assert [r["request_id"] for r in h.records(SERVICE)] == [f"c{i}" for i in range(5)]
    await h.get(SERVICE, {"user_id": 1, "merchant_id": 1}, "late")
    assert h.log.pending == 0
    await h.h.close()
    assert files_matching(h.settings.directory, "*.tmp") == []


class FailingSink(BlockingSink):
    """A sink whose disk is full."""

    def write(self, batch: Any) -> None:
        raise OSError(28, "No space left on device")


async def test_a_failing_sink_counts_its_records_as_errors(tmp_path: Path) -> None:
    h = LogHarness(tmp_path, demo_snapshot_with({}), sink=FailingSink())
    await h.log.start()
    await h.fill(users=5, merchants=5)
    for i in range(5):
        response = await h.get(SERVICE, {"user_id": i, "merchant_id": i}, f"e{i}")
        assert len(response.vector.statuses) == 44
    await h.close()
    errors = {"service": SERVICE, "reason": "error"}
    assert _sample(h, "fetcher_feature_log_dropped_total", errors) == 5
    assert _sample(h, "fetcher_feature_log_records_total", {"service": SERVICE}) == 0


@pytest.mark.parametrize("percent", [0.0, 100.0])
async def test_register_decides_once_per_plan(tmp_path: Path, percent: float) -> None:
    snapshot = demo_snapshot_with({SERVICE: percent})
    h = LogHarness(tmp_path, snapshot)
    plan = snapshot.plans.services[SERVICE]
    log: FeatureLog = h.log
    log.served(snapshot.catalog, plan, [[1, 2]], [None], None, [b""])
    entry = log._targets[id(plan)]
    assert entry[0] is plan and (entry[1] is None) == (percent == 0.0)
    await h.close()
    files = closed_files(Path(h.settings.directory), SERVICE)
    if percent == 0.0:
        assert files == []
    else:  # kept as served (b"" is no vector of the plan): left out, and counted, when read
        summary = read_logs(h.settings.directory, SERVICE, tmp_path / "o.parquet", since_ms=0)
        assert len(files) == 1 and (summary.records, summary.malformed) == (0, 1)


async def test_a_drain_is_written_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fetcher.featurelog._log.WRITE_CHUNK", 3)
    sink = BlockingSink()
    sink.release.set()
    h = LogHarness(tmp_path, demo_snapshot_with({}), sink=sink)
    await h.fill(users=5, merchants=5)
    for i in range(7):
        await h.get(SERVICE, {"user_id": i % 5, "merchant_id": 1}, f"k{i}")
    await h.batch(SERVICE, [{"user_id": 1, "merchant_id": 1}] * 5, "big")
    await h.log.flush()
    assert [b.records.num_rows for b in sink.batches] == [3, 3, 1 + 5]
    assert h.log.pending == 0
    await h.close()


async def test_request_time_values_and_derived_features_are_logged(tmp_path: Path) -> None:
    snapshot = derived_snapshot()
    h = LogHarness(tmp_path, snapshot)
    await h.log.start()
    await h.fill(users=10, merchants=10)
    sent = {}
    for i in range(6):
        context = {"amount": 10.0 * i, "channel": "web" if i % 2 else "app"}
        keys = {"user_id": i, "merchant_id": i + 5}  # merchants 10 and up are not stored
        sent[f"d{i}"] = (context, await h.get(SERVICE, keys, f"d{i}", context))
    entities = [{"user_id": u, "merchant_id": 1} for u in range(3)]
    contexts = [{"amount": 1.5, "channel": "web"}, {"amount": 0.0, "channel": "app"},
                {"amount": 2.0, "channel": "x"}]
    batch = await h.batch(SERVICE, entities, "db", contexts)
    await h.close()
    records = {(r["request_id"], r["entity"]): r for r in h.records(SERVICE)}
    assert len(records) == 9
    for rid, (context, response) in sent.items():
        rec = records[(rid, 0)]
        assert rec["context"] == context
        meta = response.metadata
        assert list(meta.groups)[-1] == SERVICE  # the derived features' pseudo group
        assert record_of(rec, meta.groups, meta.feature_groups) == expected_record(
            meta, response.vector)
        assert set(NAMES) <= set(rec["values"])
    for i, context in enumerate(contexts):
        rec = records[("db", i)]
        assert rec["context"] == context
        assert record_of(rec, batch.metadata.groups, batch.metadata.feature_groups) == (
            expected_record(batch.metadata, batch.vectors[i]))
    assert records[("db", 1)]["statuses"]["per_amount"] == "ERROR"  # 100 / 0
