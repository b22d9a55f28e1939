"""Real TCP faults between `fetcher serve` and Cassandra / DynamoDB (toxiproxy).

mb_checkout joins a Cassandra group, a DynamoDB group (a moto_server of our own) and
an embedded group; the two remote stores are read through toxiproxy. For each fault
on one store: every request answers OK within its deadline, that store's group is
ERROR or exact, the other two groups are exact in every vector (the truth checker sees
every response), and the server recovers by itself after the fault ends.

"Store down" is the proxy disabled (connections reset, connects refused) and enabled
again: what a stopped and restarted server looks like to the fetcher. The shared
Cassandra is never stopped; the rows live in a keyspace of this run, dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from tests.e2e.conftest import free_port, load_with_cli
from tests.e2e.multi_backend_support import (
    CASSANDRA_HOST,
    CASSANDRA_PORT,
    drop_keyspace,
    require_cassandra,
    write_data,
)
from tests.e2e.truth import Truth
from tests.faults.backend_support import (
    GROUP_OF,
    LOCAL_GROUP,
    PROXY_PORTS,
    STORE_TIMEOUT_MS,
    TOXIPROXY_PORT,
    Phase,
    backend_server,
    burst,
    fault_config_dir,
    moto_on,
    until_served,
    write_settings,
)
from tests.faults.harness import Caller, FaultServer
from tests.faults.report import record
from tests.faults.toxiproxy import Proxy, ToxiproxyApi, ToxiproxyError, start_toxiproxy

DEADLINE_S = 2.5  # client deadline; the stores' own timeouts are 1 s
OK = grpc.StatusCode.OK
BACKENDS = ("cassandra", "dynamodb")
REQUESTS = 30


@dataclass(frozen=True)
class Rig:
    """The running server, the loaded truth and the proxy in front of each remote store."""

    server: FaultServer
    truth: Truth
    load_ms: int
    proxies: dict[str, Proxy]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """toxiproxy (18475), moto (8120), a keyspace of this run, rows loaded, a server."""
    require_cassandra()
    workdir = tmp_path_factory.mktemp("faults-cd")
    keyspace, prefix = f"faults_cd_{os.getpid()}", f"faults{os.getpid()}_"
    try:
        toxiproxy = start_toxiproxy(workdir / "toxiproxy.log", TOXIPROXY_PORT)
    except ToxiproxyError as exc:
        pytest.fail(str(exc))
    try:
        with moto_on() as moto_url:
            api = ToxiproxyApi(TOXIPROXY_PORT)
            proxies = {
                "cassandra": api.proxy(
                    "faults_cassandra",
                    PROXY_PORTS["cassandra"],
                    f"{CASSANDRA_HOST}:{CASSANDRA_PORT}",
                ),
                "dynamodb": api.proxy(
                    "faults_dynamodb", PROXY_PORTS["dynamodb"], moto_url.removeprefix("http://")
                ),
            }
            data = write_data(workdir, _now_ms())
            port, metrics_port = free_port(), free_port()
            ddb_url = f"http://127.0.0.1:{PROXY_PORTS['dynamodb']}"
            settings = write_settings(
                workdir / "settings.toml",
                config_dir=fault_config_dir(workdir),
                port=port,
                metrics_port=metrics_port,
                store_urls={
                    "cassandra": f"cassandra://127.0.0.1:{PROXY_PORTS['cassandra']}/{keyspace}",
                    "dynamodb": f"dynamodb://us-east-1/{prefix}?endpoint_url={ddb_url}",
                    "local": f"embedded://{workdir / 'local.lmdb'}",
                },
            )
            load_with_cli(settings, data)  # creates the keyspace and the tables
            with backend_server(workdir, settings, metrics_port, port) as server:
                yield Rig(server, data.truth, data.now_ms, proxies)
    finally:
        drop_keyspace(keyspace)
        toxiproxy.terminate()
        try:
            toxiproxy.wait(10)
        except subprocess.TimeoutExpired:
            toxiproxy.kill()
            toxiproxy.wait()


@pytest.fixture(scope="module")
def warm(rig: Rig) -> Rig:
    """The rig once both remote stores have served a read (Cassandra connects lazily)."""

    async def wait() -> None:
        caller = Caller(rig.server.target)
        try:
            for backend in BACKENDS:
                await until_served(caller, rig.truth, random.Random(0), GROUP_OF[backend], 60.0)
        finally:
            await caller.close()

    asyncio.run(wait())
    return rig


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, warm: Rig) -> Iterator[str]:
    """Which store the test faults; its proxy is clean before and after."""
    name: str = request.param
    warm.proxies[name].clear()
    yield name
    warm.proxies[name].clear()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _fault_run(case: str, rig: Rig, backend: str, rng: random.Random) -> tuple[Phase, float]:
    """Traffic under the fault already applied; clear it; time recovery; then all exact."""
    group = GROUP_OF[backend]
    caller = Caller(rig.server.target)
    try:
        under = await burst(
            caller,
            rig.truth,
            rng,
            requests=REQUESTS,
            concurrency=6,
            load_ms=rig.load_ms,
            timeout_s=DEADLINE_S,
            may_fail=(group,),
        )
        rig.proxies[backend].clear()
        recovered_s = await until_served(caller, rig.truth, rng, group)
        after = await burst(
            caller,
            rig.truth,
            rng,
            requests=10,
            concurrency=4,
            load_ms=rig.load_ms,
            timeout_s=DEADLINE_S,
        )
    finally:
        await caller.close()
    out = under.outcome
    # OK is an answer within the deadline: never DEADLINE_EXCEEDED, never an RPC error.
    assert out.codes == {OK: REQUESTS}, f"{case} {backend}: {out.codes} {out.details}"
    assert after.outcome.codes == {OK: 10}, f"{backend} after {case}: {after.outcome.details}"
    # The other remote group and the embedded one were served (exactly) in every vector.
    other = GROUP_OF[next(b for b in BACKENDS if b != backend)]
    for unaffected in (other, LOCAL_GROUP):
        assert under.served(unaffected) == under.tally.vectors, (case, backend, unaffected)
    record(
        f"{backend}: {case}",
        requests=REQUESTS,
        vectors=under.tally.vectors,
        group_error=under.errors(group),
        group_served=under.served(group),
        p50_ms=round(out.percentile(50) * 1000, 1),
        p99_ms=round(out.percentile(99) * 1000, 1),
        max_ms=round(max(out.latencies[OK]) * 1000, 1),
        recovered_s=round(recovered_s, 2),
        after_vectors=after.tally.vectors,
        wrong_values=0,
    )
    return under, recovered_s


async def test_latency_above_store_timeout_is_error(
    warm: Rig, backend: str, rng: random.Random
) -> None:
    server = warm.server
    opened = server.metric("fetcher_store_breaker_transitions_total", store=backend, state="open")
    latency = 2 * STORE_TIMEOUT_MS[backend]
    warm.proxies[backend].add("latency", {"latency": latency, "jitter": 0})
    under, _ = await _fault_run(f"latency {latency} ms > timeout", warm, backend, rng)
    assert under.served(GROUP_OF[backend]) == 0 and under.errors(GROUP_OF[backend]) > 0
    # The breaker opened under the fault, and a probe closed it again afterwards.
    assert (
        server.metric("fetcher_store_breaker_transitions_total", store=backend, state="open")
        > opened
    )
    assert server.metric("fetcher_store_breaker_state", store=backend) == 0


async def test_latency_below_store_timeout_is_served(
    warm: Rig, backend: str, rng: random.Random
) -> None:
    warm.proxies[backend].add("latency", {"latency": 20, "jitter": 5})
    under, _ = await _fault_run("latency 20 ± 5 ms < timeout", warm, backend, rng)
    group = GROUP_OF[backend]
    # A shared 2-core machine may stall a read past its timeout now and then.
    assert under.served(group) >= 0.95 * (under.served(group) + under.errors(group))


async def test_reset_peer(warm: Rig, backend: str, rng: random.Random) -> None:
    warm.proxies[backend].add("reset_peer", {"timeout": 0}, stream="upstream")
    under, _ = await _fault_run("reset_peer", warm, backend, rng)
    assert under.served(GROUP_OF[backend]) == 0


async def test_store_accepts_and_never_answers(warm: Rig, backend: str, rng: random.Random) -> None:
    warm.proxies[backend].add("timeout", {"timeout": 0})  # data held, connection kept open
    under, _ = await _fault_run("timeout (never answers)", warm, backend, rng)
    assert under.served(GROUP_OF[backend]) == 0


async def test_store_down_then_back(warm: Rig, backend: str, rng: random.Random) -> None:
    """Proxy disabled (stands in for a stopped server), enabled again: recovers unrestarted."""
    pid = warm.server.pid
    warm.proxies[backend].enable(False)
    under, recovered_s = await _fault_run("proxy disabled, then enabled", warm, backend, rng)
    assert under.served(GROUP_OF[backend]) == 0
    assert warm.server.pid == pid and warm.server.server.process.poll() is None
    # Cassandra's driver retries a lost node on a 0.5 s .. 5 s backoff (kvstores/cassandra.py).
    assert recovered_s < 15.0, recovered_s
