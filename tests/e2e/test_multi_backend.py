"""One feature service over three backends, through the real `fetcher load` and `fetcher serve`.

mb_checkout joins a Cassandra group (users), a DynamoDB group (merchants) and a Redis
group (devices). The tests prove, from the server's answers and its own /metrics:

- GetFeatures and GetBatchFeatures return one merged vector whose every value is the
  loaded row's (tests.e2e.truth), latest versions winning, NOT_FOUND per group;
- each store is read once per request (one multi_get, whatever the batch size), and
  the three concurrently: with replies held back by a proxy, the request takes less
  than the three store reads added up, which a sequential fan-out cannot;
- L2 (Redis) in front of Cassandra and DynamoDB keeps their values PRESENT and exact
  while those stores are unreachable, until the group's L2 TTL ends; then only that
  group's features are ERROR.

Servers: the test Cassandra (FETCHER_TEST_CASSANDRA_PORT), DynamoDB
(FETCHER_TEST_DYNAMODB_URL) and Redis (FETCHER_TEST_REDIS_URL) of scripts/services.sh,
each used under names of this run (keyspace, table prefix, key prefix), dropped at the
end; the outage test kills a moto_server of its own and stops its own proxy.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from fetcher.client import FeatureClient, FeatureValue, KeyInput
from fetcher.types import Status
from tests.e2e.conftest import E2EData, free_port, load_with_cli, serving
from tests.e2e.lifecycle_support import scrape
from tests.e2e.multi_backend_support import (
    CASSANDRA_HOST,
    CASSANDRA_PORT,
    CONFIG_DIR,
    DEVICE,
    DYNAMODB_URL,
    MERCHANT,
    SERVICE,
    USER,
    check_vector,
    count_redis_keys,
    delete_redis_keys,
    drop_dynamodb_tables,
    drop_keyspace,
    dynamodb_answers,
    entity,
    host_port,
    private_moto,
    proxy_host,
    require_cassandra,
    write_data,
)
from tests.e2e.truth import RowState, Truth

pytestmark = pytest.mark.e2e

STORES = ("cassandra", "dynamodb", "redis")
GROUP_STORE = {USER: "cassandra", MERCHANT: "dynamodb", DEVICE: "redis"}
# L2 TTLs of the two cached groups (configs/multi_backend/groups/*.json).
# Long enough that steps 1 and 2 below end before the first one on a busy machine.
USER_L2_TTL_S, MERCHANT_L2_TTL_S = 10.0, 20.0
# Added to every store reply while the fan-out's parallelism is measured.
REPLY_DELAY_S = 0.25


def write_settings(
    path: Path,
    *,
    port: int,
    metrics_port: int,
    stores: Mapping[str, str],
    l2_url: str | None = None,
) -> Path:
    """Settings naming the three stores (store name -> URL); metrics on `metrics_port`."""
    lines = [
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        f"config_dir = {json.dumps(str(CONFIG_DIR))}",
        "workers = 1",
        f'metrics_listen = "127.0.0.1:{metrics_port}"',
        "drain_delay_s = 0.0",
        "shutdown_grace_s = 2.0",
        # The first Cassandra ping connects and prepares statements: seconds, not millis.
        "health_timeout_s = 10.0",
        "",
        "[cache]",
    ]
    if l2_url is not None:
        lines.append(f"l2_url = {json.dumps(l2_url)}")
    for name, url in stores.items():
        # Generous: the machine is shared and slow; speed is measured in bench/.
        lines += ["", f"[stores.{name}]", f"url = {json.dumps(url)}", "timeout_ms = 3000",
                  "required = true"]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- metrics -----------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric(samples: Mapping[str, float], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for key, value in samples.items():
        match = _SAMPLE.match(key)
        if match is None or match.group(1) != name:
            continue
        have = dict(_LABEL.findall(match.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += value
    return total


def delta(before: Mapping[str, float], after: Mapping[str, float], name: str,
          **labels: str) -> float:  # fmt: skip
    """How much `name{labels}` moved between two scrapes."""
    return metric(after, name, **labels) - metric(before, name, **labels)


def now_ms() -> int:
    """Wall clock in epoch ms, taken before a request: its read time."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Backends:
    """The shared test servers and this run's names in them."""

    redis_url: str
    dynamodb_url: str
    keyspace: str
    table_prefix: str
    key_prefix: str

    def store_urls(self, cassandra_port: int, dynamodb_url: str, redis_port: int) -> dict[str, str]:
        """The three [stores.*] URLs; host ports let a test put a proxy in between."""
        db = urlsplit(self.redis_url).path or "/0"
        return {
            "cassandra": f"cassandra://{CASSANDRA_HOST}:{cassandra_port}/{self.keyspace}",
            "dynamodb": f"dynamodb://us-east-1/{self.table_prefix}?endpoint_url={dynamodb_url}",
            "redis": f"redis://127.0.0.1:{redis_port}{db}?key_prefix={self.key_prefix}",
        }


@pytest.fixture(scope="module")
def backends(redis_url: str) -> Iterator[Backends]:
    """Check the three servers answer; afterwards drop what this module wrote into them."""
    require_cassandra()
    if not dynamodb_answers(DYNAMODB_URL):
        pytest.fail(f"DynamoDB-compatible server not reachable at {DYNAMODB_URL}: "
                    "run `scripts/services.sh start dynamodb`")  # fmt: skip
    run = f"{os.getpid()}"
    found = Backends(redis_url, DYNAMODB_URL, f"mb_e2e_{run}", f"mb{run}_", f"mb{run}")
    try:
        yield found
    finally:
        delete_redis_keys(redis_url, f"{found.key_prefix}:*".encode(),
                          b"l2:*cassandra/mb_users*", b"l2:*dynamodb/mb_merchants*")  # fmt: skip
        drop_dynamodb_tables(DYNAMODB_URL, found.table_prefix)
        drop_keyspace(found.keyspace)


@pytest.fixture(scope="module")
def mb_data(tmp_path_factory: pytest.TempPathFactory) -> E2EData:
    """The rows of the three groups as JSONL load files, and the truth built from them."""
    return write_data(tmp_path_factory.mktemp("multi-backend-files"), now_ms())


def _store_calls(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {s: delta(before, after, "fetcher_store_requests_total", store=s) for s in STORES}


def _store_seconds(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {s: delta(before, after, "fetcher_store_duration_seconds_sum", store=s)
            for s in STORES}  # fmt: skip


def test_one_vector_from_three_backends(
    backends: Backends, mb_data: E2EData, tmp_path: Path
) -> None:
    """Exact merged vectors; one multi_get per store per request; the three in parallel."""
    truth = mb_data.truth
    with proxy_host() as proxies:
        # Every store behind a proxy of ours: transparent until replies are delayed below.
        cass = proxies.start((CASSANDRA_HOST, CASSANDRA_PORT))
        ddb = proxies.start(host_port(backends.dynamodb_url))
        red = proxies.start(host_port(backends.redis_url))
        port, metrics_port = free_port(), free_port()
        settings = write_settings(
            tmp_path / "settings.toml", port=port, metrics_port=metrics_port,
            stores=backends.store_urls(cass.port, f"http://127.0.0.1:{ddb.port}", red.port),
        )  # fmt: skip
        load_with_cli(settings, mb_data)  # creates the keyspace and tables (store.create())
        with (
            serving("multi-backend", settings, port, tmp_path / "server.log") as server,
            FeatureClient(server.target, timeout_s=20.0) as client,
        ):
            # GetFeatures: one entity, three groups, one multi_get per store.
            states: dict[str, set[RowState | Status]] = {g: set() for g in GROUP_STORE}
            for i in (1, 2, 11, 16, 31):
                keys = entity(i)
                before, read = scrape(metrics_port), now_ms()
                row = client.get(service=SERVICE, keys=keys)
                after = scrape(metrics_port)
                for group, state in check_vector(truth, row, keys, read).items():
                    states[group].add(state)
                assert _store_calls(before, after) == dict.fromkeys(STORES, 1.0), keys
            # Every group answered both PRESENT and NOT_FOUND (entities 16 and 31).
            assert all(s == {RowState.PRESENT, RowState.NOT_FOUND} for s in states.values())

            # GetBatchFeatures: 62 entities, still one multi_get per store.
            batch = [entity(i) for i in range(1, 63)]
            before, read = scrape(metrics_port), now_ms()
            rows = client.get_batch(batch, service=SERVICE)
            after = scrape(metrics_port)
            _check_all(truth, rows, batch, read)
            assert _store_calls(before, after) == dict.fromkeys(STORES, 1.0)
            assert delta(before, after, "fetcher_entities_served_total", target=SERVICE) == 62

            # Parallel fan-out: every reply held REPLY_DELAY_S by the proxies. Each store
            # read then takes at least that long, and a sequential fan-out would take at
            # least the three reads added up; the server's own histograms tell both.
            for proxy in (cass, ddb, red):
                proxy.delay_s = REPLY_DELAY_S
            for method, entities in (("GetFeatures", batch[2:3]), ("GetBatchFeatures", batch)):
                before, read = scrape(metrics_port), now_ms()
                if method == "GetFeatures":
                    got = [client.get(service=SERVICE, keys=entities[0])]
                else:
                    got = client.get_batch(entities, service=SERVICE)
                after = scrape(metrics_port)
                _check_all(truth, got, entities, read)
                assert _store_calls(before, after) == dict.fromkeys(STORES, 1.0), method
                reads = _store_seconds(before, after)
                rpc = delta(before, after, "fetcher_rpc_duration_seconds_sum", method=method)
                assert all(s >= REPLY_DELAY_S for s in reads.values()), (method, reads)
                assert rpc < sum(reads.values()), (
                    f"{method} took {rpc:.3f} s, the store reads {reads}: not in parallel"
                )


def _check_all(
    truth: Truth, rows: Sequence[Mapping[str, FeatureValue]],
    keys: Sequence[Mapping[str, KeyInput]], read_ms: int, down: Collection[str] = (),
) -> set[str]:  # fmt: skip
    """Check every vector of a batch; the groups that were ERROR in it."""
    assert len(rows) == len(keys)
    errors: set[str] = set()
    for row, entity_keys in zip(rows, keys, strict=True):
        states = check_vector(truth, row, entity_keys, read_ms, down=down)
        errors.update(g for g, state in states.items() if state is Status.ERROR)
    return errors


def _down_groups(rows: Sequence[Mapping[str, FeatureValue]]) -> set[str]:
    """The groups whose features are ERROR in any vector (check_vector then checks all)."""
    return {v.group for row in rows for v in row.values() if v.status is Status.ERROR}


def test_l2_serves_cassandra_and_dynamodb_while_they_are_down(
    backends: Backends, mb_data: E2EData, tmp_path: Path
) -> None:
    """L2 answers for the two down stores until each group's L2 TTL, then only it is ERROR."""
    truth = mb_data.truth
    batch = [entity(i) for i in range(1, 7)]  # rows in all three groups: no negative entries
    l2 = backends.redis_url
    with proxy_host() as proxies, private_moto() as (moto_url, moto):
        cass = proxies.start((CASSANDRA_HOST, CASSANDRA_PORT))
        port, metrics_port = free_port(), free_port()
        settings = write_settings(
            tmp_path / "settings.toml", port=port, metrics_port=metrics_port, l2_url=l2,
            stores=backends.store_urls(cass.port, moto_url, host_port(l2)[1]),
        )  # fmt: skip
        load_with_cli(settings, mb_data)
        with (
            serving("multi-backend-l2", settings, port, tmp_path / "server.log") as server,
            FeatureClient(server.target, timeout_s=20.0) as client,
        ):
            # 1. Stores up: read from the stores, L2 filled (in the background).
            started = time.monotonic()  # before any L2 write: no entry expires before +TTL
            before, read = scrape(metrics_port), now_ms()
            _check_all(truth, client.get_batch(batch, service=SERVICE), batch, read)
            after = scrape(metrics_port)
            assert _store_calls(before, after) == dict.fromkeys(STORES, 1.0)
            assert delta(before, after, "fetcher_cache_misses_total", tier="l2") == 12
            assert delta(before, after, "fetcher_cache_hits_total", tier="l2") == 0
            deadline = time.monotonic() + 10
            while (count_redis_keys(l2, b"l2:*cassandra/mb_users*"),
                   count_redis_keys(l2, b"l2:*dynamodb/mb_merchants*")) != (6, 6):  # fmt: skip
                assert time.monotonic() < deadline, "L2 entries not written within 10 s"
                time.sleep(0.05)

            # 2. Cassandra's proxy stopped, our moto killed: every value still PRESENT,
            #    the two groups from L2, neither store called.
            proxies.stop(cass)
            moto.kill()
            moto.wait(timeout=10)
            before, read = scrape(metrics_port), now_ms()
            _check_all(truth, client.get_batch(batch, service=SERVICE), batch, read)
            after = scrape(metrics_port)
            assert _store_calls(before, after) == {"cassandra": 0.0, "dynamodb": 0.0,
                                                   "redis": 1.0}  # fmt: skip
            assert delta(before, after, "fetcher_cache_hits_total", tier="l2") == 12

            # 3. Past each group's L2 TTL, that group (and only it) is ERROR: users first
            #    (10 s), then merchants (20 s); devices (Redis, up) stay exact throughout.
            first_error: dict[str, float] = {}
            seen: list[frozenset[str]] = []
            while MERCHANT not in first_error:
                assert time.monotonic() - started < 60, f"still no ERROR after 60 s: {seen}"
                time.sleep(0.2)
                at, read = time.monotonic() - started, now_ms()
                rows = client.get_batch(batch, service=SERVICE)
                down = _down_groups(rows)
                assert _check_all(truth, rows, batch, read, down=down) == down
                seen.append(frozenset(down))
                for group in down:
                    first_error.setdefault(group, at)
            assert frozenset({USER}) in seen, f"never only the Cassandra group ERROR: {seen}"
            assert seen[-1] == {USER, MERCHANT}, seen
            # An entry cannot expire before its TTL (it was written after `started`).
            assert first_error[USER] >= USER_L2_TTL_S, first_error
            assert first_error[MERCHANT] >= MERCHANT_L2_TTL_S, first_error
            final = scrape(metrics_port)
            assert metric(final, "fetcher_store_errors_total", store="cassandra") > 0
            assert metric(final, "fetcher_store_errors_total", store="dynamodb") > 0
            assert metric(final, "fetcher_store_errors_total", store="redis") == 0
            assert metric(final, "fetcher_cache_errors_total", tier="l2") == 0
