"""Helpers for tests/faults/test_cassandra_dynamodb_faults.py: faults between `fetcher serve`
and Cassandra / DynamoDB, each behind a proxy of a toxiproxy-server of our own.

Feature service mb_checkout (tests/e2e/configs/multi_backend) joins mb_user_cassandra
(Cassandra), mb_merchant_dynamodb (DynamoDB) and mb_device_redis, which these tests move
to an embedded LMDB store that no fault touches. L1 and L2 are off: every read reaches
the stores. Ports: toxiproxy API 18475, proxies 21100-21199, moto_server 8120.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from fetcher.client import KeyInput
from fetcher.v1 import feature_service_pb2 as pb
from tests.e2e.conftest import serving
from tests.e2e.multi_backend_support import (
    CONFIG_DIR,
    DEVICE,
    DEVICES,
    MERCHANT,
    MOTO_SERVER,
    SERVICE,
    USER,
)
from tests.e2e.truth import Truth
from tests.faults.harness import Answer, Caller, FaultServer
from tests.faults.toxiproxy import port_free
from tests.faults.traffic import Outcome
from tests.faults.truth import ResponseChecker, Tally
from tests.servers import dynamodb_answers

TOXIPROXY_PORT = 18475
PROXY_PORTS = {"cassandra": 21100, "dynamodb": 21101}
MOTO_PORT = 8120
# The group each faulted store holds; the embedded store holds DEVICE.
GROUP_OF = {"cassandra": USER, "dynamodb": MERCHANT}
LOCAL_GROUP = DEVICE
# Store read bounds, far wider than Redis's 100 ms: a Cassandra JVM, a moto_server, the
# server and the client share two cores with other suites, and there a fault-free batch
# read was seen taking ~460 ms (p99); a fault-free read must never be ERROR.
STORE_TIMEOUT_MS = {"cassandra": 1000, "dynamodb": 1000}


def fault_config_dir(out: Path) -> Path:
    """The multi-backend catalog with the device group in the embedded store "local", no cache."""
    target = out / "config"
    shutil.copytree(CONFIG_DIR, target)
    for path in (target / "groups").glob("*.json"):
        spec = json.loads(path.read_text(encoding="utf-8"))
        if spec["name"] == DEVICE:
            spec["store"] = "local"
        spec["cache"] = {"l1": False, "l2": False}
        path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return target


def write_settings(
    path: Path, *, config_dir: Path, port: int, metrics_port: int, store_urls: Mapping[str, str]
) -> Path:
    """Settings of the fault server: one worker, tiny L1, breaker 5 failures / 0.3 s."""
    lines = [
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        f"config_dir = {json.dumps(str(config_dir))}",
        "workers = 1",
        f'metrics_listen = "127.0.0.1:{metrics_port}"',
        "drain_delay_s = 0.0",
        "shutdown_grace_s = 2.0",
        "health_interval_s = 0.5",
        # The first Cassandra ping connects and prepares: seconds, not milliseconds.
        "health_timeout_s = 10.0",
        "max_batch_entities = 600",
        "",
        "[cache]",
        "l1_max_entries = 1",
    ]
    for name, url in store_urls.items():
        lines += ["", f"[stores.{name}]", f"url = {json.dumps(url)}"]
        if name in STORE_TIMEOUT_MS:
            lines += [
                f"timeout_ms = {STORE_TIMEOUT_MS[name]}",
                "required = false",
                "breaker_failures = 5",
                "breaker_cooldown_s = 0.3",
                "max_in_flight = 32",
            ]
        else:
            lines += ["timeout_ms = 1000"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextmanager
def moto_on(port: int = MOTO_PORT) -> Iterator[str]:
    """A moto_server of our own on 127.0.0.1:port, killed afterwards; yields its URL."""
    if not os.access(MOTO_SERVER, os.X_OK):
        raise AssertionError(f"{MOTO_SERVER} not found: run scripts/setup.sh (moto[server])")
    if not port_free(port):
        raise AssertionError(
            f"127.0.0.1:{port} is taken: stop what listens there "
            "(the fault tests start their own moto_server on it)"
        )
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not dynamodb_answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"moto_server on {url} did not start")
            time.sleep(0.1)
        yield url
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def backend_server(
    workdir: Path, settings: Path, metrics_port: int, port: int
) -> Iterator[FaultServer]:
    """`fetcher serve` on the settings, as a FaultServer (metrics, pid)."""
    with serving("faults-cd", settings, port, workdir / "server.log") as server:
        yield FaultServer(server, metrics_port)


# -- traffic ---------------------------------------------------------------------------


def random_entity(rng: random.Random) -> dict[str, KeyInput]:
    """An mb_checkout entity; some keys have no row in their group (NOT_FOUND)."""
    return {
        "user_id": rng.randint(1, 31),
        "merchant_id": rng.randint(1, 16),
        "device": rng.choice([*DEVICES, "dev-999"]),
    }


@dataclass
class Phase:
    """One burst's answers (codes, latencies) and what the truth checker saw in them."""

    outcome: Outcome
    tally: Tally

    def errors(self, group: str) -> int:
        """Vectors in which `group` was ERROR."""
        return self.tally.errors(group)

    def served(self, group: str) -> int:
        """Vectors in which `group` was answered from its store (and was exact)."""
        return self.tally.served(group)


async def _one(
    caller: Caller,
    checker: ResponseChecker,
    rng: random.Random,
    outcome: Outcome,
    *,
    at_ms: int | None,
    timeout_s: float,
    may_fail: Collection[str],
    batch_share: float,
) -> Answer:
    entities: Sequence[dict[str, KeyInput]]
    request: pb.GetFeaturesRequest | pb.GetBatchFeaturesRequest
    if rng.random() < batch_share:
        entities = [random_entity(rng) for _ in range(20)]
        request = Caller.batch(entities, at_ms, service=SERVICE)
    else:
        entities = [random_entity(rng)]
        request = Caller.single(entities[0], at_ms, service=SERVICE)
    answer = await caller.call(request, timeout_s)
    outcome.add(answer)
    if answer.code is grpc.StatusCode.OK:
        # Every row was loaded before the server started, so any instant between
        # sending and receiving has the same truth as this one.
        read_ms = at_ms if at_ms is not None else time.time_ns() // 1_000_000
        checker.check_response(
            answer.response, list(entities), read_ms, service=SERVICE, may_fail=may_fail
        )
    return answer


async def burst(
    caller: Caller,
    truth: Truth,
    rng: random.Random,
    *,
    requests: int,
    concurrency: int,
    load_ms: int,
    timeout_s: float,
    may_fail: Collection[str] = (),
    batch_share: float = 0.3,
) -> Phase:
    """`requests` requests (half latest, half as of the load time), every OK answer checked."""
    checker = ResponseChecker(truth)
    outcome = Outcome()
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            at_ms = load_ms if rng.random() < 0.5 else None
            await _one(
                caller,
                checker,
                rng,
                outcome,
                at_ms=at_ms,
                timeout_s=timeout_s,
                may_fail=may_fail,
                batch_share=batch_share,
            )

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    outcome.seconds = time.perf_counter() - started
    return Phase(outcome, checker.tally)


async def until_served(
    caller: Caller, truth: Truth, rng: random.Random, group: str, within_s: float = 20.0
) -> float:
    """Seconds until a request gets `group` served again (checked); fails after `within_s`."""
    checker = ResponseChecker(truth)
    outcome = Outcome()
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        await _one(
            caller,
            checker,
            rng,
            outcome,
            at_ms=None,
            timeout_s=2.5,
            may_fail=(group,),
            batch_share=0.0,
        )
        if checker.tally.served(group):
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(
        f"{group} not served again {within_s} s after the fault ended: "
        f"{dict(outcome.codes)} {outcome.details}"
    )
