"""Admission control: in-flight and queue bounds, FIFO hand-over, deadlines, cancellation."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from prometheus_client import CollectorRegistry

from fetcher.api._admission import Admission, Overloaded


async def test_free_slots_then_queue_then_refusal() -> None:
    registry = CollectorRegistry()
    admission = Admission(2, 1, registry)
    assert admission.try_enter() and admission.try_enter()
    assert not admission.try_enter()
    queued = asyncio.create_task(admission.enter(None))
    await asyncio.sleep(0)
    assert admission.queued == 1
    # The gauges read the live counts at scrape time.
    assert registry.get_sample_value("fetcher_rpc_running") == 2
    assert registry.get_sample_value("fetcher_rpc_queued") == 1
    with pytest.raises(Overloaded, match=r"max_inflight_rpcs=2.*max_queued_rpcs=1"):
        await admission.enter(None)
    assert registry.get_sample_value("fetcher_rpc_shed_total", {"reason": "queue_full"}) == 1
    admission.leave()  # the slot moves to the queued request
    await queued
    assert admission.running == 2 and admission.queued == 0
    admission.leave()
    admission.leave()
    assert admission.running == 0
    assert registry.get_sample_value("fetcher_rpc_running") == 0
    assert registry.get_sample_value("fetcher_rpc_queued") == 0


async def test_slots_are_handed_over_in_arrival_order() -> None:
    admission = Admission(1, 10)
    assert admission.try_enter()
    order: list[int] = []

    async def one(n: int) -> None:
        await admission.enter(None)
        order.append(n)

    tasks = [asyncio.create_task(one(n)) for n in range(5)]
    await asyncio.sleep(0)
    # A newcomer may not jump the queue even when a slot is free for an instant.
    for _ in range(5):
        admission.leave()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_queue_wait_ends_at_the_deadline() -> None:
    registry = CollectorRegistry()
    admission = Admission(1, 5, registry)
    assert admission.try_enter()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Overloaded, match="before the request deadline"):
        await admission.enter(started + 0.05)
    assert 0.04 <= loop.time() - started < 1.0
    assert admission.queued == 0
    assert registry.get_sample_value("fetcher_rpc_shed_total", {"reason": "queue_timeout"}) == 1
    admission.leave()
    assert admission.running == 0


async def test_cancelled_waiter_never_leaks_a_slot() -> None:
    admission = Admission(1, 5)
    assert admission.try_enter()
    waiter = asyncio.create_task(admission.enter(None))
    other = asyncio.create_task(admission.enter(None))
    await asyncio.sleep(0)
    admission.leave()  # hands the slot to `waiter`...
    waiter.cancel()  # ...which is cancelled before it runs: the slot goes on to `other`
    await asyncio.gather(waiter, return_exceptions=True)
    await other
    assert admission.running == 1 and admission.queued == 0
    admission.leave()
    assert admission.running == 0
    assert admission.try_enter()


async def test_zero_means_unlimited() -> None:
    admission = Admission(0, 0)
    for _ in range(1000):
        await admission.enter(None)
    admission.leave()
    assert admission.running == 0


async def test_servicer_answers_resource_exhausted_beyond_the_bounds(tmp_path: object) -> None:
    from pathlib import Path

    from fetcher.api._service import FeatureServicer
    from fetcher.v1 import feature_service_pb2 as pb
    from tests.unit.fetch_support import FetchHarness, demo_snapshot

    assert isinstance(tmp_path, Path)
    harness = FetchHarness(tmp_path, demo_snapshot())
    admission = Admission(1, 0, harness.metrics.registry)
    servicer = FeatureServicer(lambda: harness.snapshot, harness.engine, harness.metrics,
                               max_batch_entities=10, admission=admission)

    class Aborted(Exception):
        pass

    class Context:
        code: grpc.StatusCode | None = None
        message = ""

        def time_remaining(self) -> float:
            return 1.0

        async def abort(self, code: grpc.StatusCode, message: str) -> None:
            self.code, self.message = code, message
            raise Aborted

    harness.stores["main"].gate = asyncio.Event()
    request = pb.GetFeaturesRequest(feature_group="merchant_stats")
    request.keys["merchant_id"].int64_value = 1
    first = asyncio.create_task(servicer.GetFeatures(request, Context()))
    await asyncio.sleep(0.02)
    refused = Context()
    with pytest.raises(Aborted):
        await servicer.GetFeatures(request, refused)
    assert refused.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "overloaded" in refused.message
    harness.stores["main"].gate.set()
    await first
    assert admission.running == 0
    await harness.close()
