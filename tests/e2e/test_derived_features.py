"""Derived features through the real server: a definitions repository whose Join declares
request-time values and derivations is compiled with `fetcher compile`, its groups' rows
(nulls, zeros, int64's ends, stale rows) loaded with `fetcher load`, and `fetcher serve`
answers GetFeatures / GetBatchFeatures with context values. Hypothesis draws entities
(missing ones included) and context values; every derived value and status must equal the
same expression evaluated in plain Python (tests/e2e/derived_oracle.py) on the served
inputs, and the served inputs must be the rows written."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.client import FeatureClient, FeatureValue, decode_vectors
from fetcher.types import FeatureType, Status
from tests.e2e.compiled_support import compile_cli, load_cli, run_cli, write_jsonl
from tests.e2e.conftest import FETCHER_MODULE, RunningServer, serving, write_settings
from tests.e2e.derived_oracle import DERIVATIONS, ERR, N, P, Tagged, evaluate
from tests.servers import free_port
from tests.unit.compiler.repo_support import write_repo

pytestmark = pytest.mark.e2e

SERVICE = "risk.scoring.scoring"
USERS_GROUP, MERCHANTS_GROUP = "risk.users.users", "risk.merchants.merchants"
USERS, MERCHANTS = 40, 40  # ids 1..N are written; 0 and N + 1 are not
DAY_MS = 86_400_000
CONTEXT = {"amount": FeatureType.DOUBLE, "channel": FeatureType.STRING,
           "items": FeatureType.INT64}

FILES = {
    "group_bys/risk/users.py": """
        users = GroupBy(
            keys=["user_id"],
            sources=[EntitySource(
                snapshot_table="risk.users",
                query=Query(selects=["user_id", "age", "avg_order", "orders_7d", "orders_30d",
                                     "country", "verified", "cats"]),
                columns={
                    "user_id": "int64",
                    "age": Column("int64", "age in years", nullable=True),
                    "avg_order": Column("double", "average order value", nullable=True),
                    "orders_7d": Column("int32", "orders in 7 days", nullable=True),
                    "orders_30d": Column("int64", "orders in 30 days"),
                    "country": Column("string", "country code", nullable=True),
                    "verified": Column("bool", "identity verified", nullable=True),
                    "cats": Column("list<double>", "category affinities", nullable=True),
                },
            )],
            online=True,
        )
    """,
    "group_bys/risk/merchants.py": """
        merchants = GroupBy(
            keys=["merchant_id"],
            sources=[EntitySource(
                snapshot_table="risk.merchants",
                query=Query(selects=["merchant_id", "avg_ticket", "orders_7d", "risk", "tags"]),
                columns={
                    "merchant_id": "int64",
                    "avg_ticket": Column("double", "average ticket", nullable=True),
                    "orders_7d": Column("int64", "orders in 7 days", nullable=True),
                    "risk": Column("float", "risk score", nullable=True),
                    "tags": Column("list<string>", "tags", nullable=True),
                },
            )],
            online=True,
            max_age="1d",
        )
    """,
    "joins/risk/scoring.py": f"""
        from group_bys.risk.merchants import merchants
        from group_bys.risk.users import users

        scoring = Join(
            left={{"user_id": "int64", "merchant_id": "int64"}},
            right_parts=[JoinPart(users, prefix="user_"),
                         JoinPart(merchants, prefix="merchant_")],
            context={{"amount": "double", "channel": "string", "items": "int64"}},
            derivations={DERIVATIONS!r},
            online=True,
        )
    """,
}
USER_FEATURES = ("age", "avg_order", "orders_7d", "orders_30d", "country", "verified", "cats")
MERCHANT_FEATURES = ("avg_ticket", "orders_7d", "risk", "tags")
MIN, MAX = -(2**63), 2**63 - 1


def _user(rng: random.Random) -> dict[str, Any]:
    return {
        "age": rng.choice([None, 0, 18, 24, 25, 64, 65, 99, rng.randint(0, 120)]),
        "avg_order": rng.choice([None, 0.0, -0.0, 1e-308, 1e308, -12.5, 0.1,
                                 rng.uniform(-100, 1000)]),
        "orders_7d": rng.choice([None, 0, 3, -5, 2**31 - 1, -(2**31), rng.randint(0, 99)]),
        "orders_30d": rng.choice([0, 7, -1, MAX, MIN, 2**62, rng.randint(-99, 999)]),
        "country": rng.choice([None, "IN", "US", "", "é"]),
        "verified": rng.choice([None, True, False]),
        "cats": rng.choice([None, [], [0.5, -1.25], [rng.uniform(0, 1)]]),
    }


def _merchant(rng: random.Random) -> dict[str, Any]:
    return {
        "avg_ticket": rng.choice([None, 0.0, -3.0, 1e-300, 49.75, rng.uniform(0.01, 500)]),
        "orders_7d": rng.choice([None, 0, 2**62, -(2**62), MIN, MAX, rng.randint(-9, 999)]),
        # float (32-bit) columns: quarters are exact.
        "risk": rng.choice([None, 0.0, 0.75, 1.0, rng.randint(0, 4) / 4]),
        "tags": rng.choice([None, [], ["new"], ["a", "b"]]),
    }


@dataclass(frozen=True)
class Served:
    """The running server, and the rows written (id -> (values, event ms))."""

    server: RunningServer
    users: Mapping[int, tuple[dict[str, Any], int]]
    merchants: Mapping[int, tuple[dict[str, Any], int]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("derived")
    repo = write_repo(tmp / "repo", FILES)
    catalog = tmp / "catalog"
    compile_cli(repo, catalog)
    rng = random.Random(17)
    now = time.time_ns() // 1_000_000
    users = {i: (_user(rng), now - rng.randint(1, 600) * 60_000) for i in range(1, USERS + 1)}
    # Some merchants' rows are older than the group's max age (1 day): OUTSIDE_MAX_AGE.
    merchants = {i: (_merchant(rng), now - (2 * DAY_MS if i % 7 == 0 else
                                            rng.randint(1, 600) * 60_000))
                 for i in range(1, MERCHANTS + 1)}

    def lines(rows: Mapping[int, tuple[dict[str, Any], int]], key: str) -> list[dict[str, Any]]:
        return [{key: i, "event_time": ms, **values} for i, (values, ms) in rows.items()]

    port = free_port()
    settings_path = write_settings(tmp / "settings.toml", port=port, config_dir=catalog,
                                   store_url=f"embedded://{tmp / 'store.lmdb'}")
    load_cli(settings_path, {
        USERS_GROUP: (write_jsonl(tmp / "users.jsonl", lines(users, "user_id")), USERS),
        MERCHANTS_GROUP: (write_jsonl(tmp / "merchants.jsonl", lines(merchants, "merchant_id")),
                          MERCHANTS),
    })
    with serving("derived", settings_path, port, tmp / "server.log",
                 command=FETCHER_MODULE) as server:
        yield Served(server, users, merchants)


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[FeatureClient]:
    with FeatureClient(served.server.target, timeout_s=10.0) as feature_client:
        yield feature_client


def _tag(value: FeatureValue) -> Tagged:
    """A served input as the oracle reads it: PRESENT its value, ERROR, else null."""
    if value.status is Status.PRESENT:
        return (P, value.value)
    return ERR if value.status is Status.ERROR else (N, None)


def _context_tag(name: str, value: Any) -> Tagged:
    if CONTEXT[name] is FeatureType.DOUBLE:
        value = float(value)
        if not math.isfinite(value):
            return ERR  # a NaN or infinite double is ERROR to a derivation
    return (P, value)


def _check_inputs(served: Served, row: Mapping[str, FeatureValue], user: int,
                  merchant: int, read_ms: int) -> None:
    """The joins' features are the rows written (or NOT_FOUND / OUTSIDE_MAX_AGE)."""
    for prefix, names, rows, key in (("user_", USER_FEATURES, served.users, user),
                                     ("merchant_", MERCHANT_FEATURES, served.merchants,
                                      merchant)):
        written = rows.get(key)
        for name in names:
            got = row[prefix + name]
            if written is None:
                assert got.status is Status.NOT_FOUND, (prefix + name, key)
            elif prefix == "merchant_" and written[1] < read_ms - DAY_MS:
                assert got.status is Status.OUTSIDE_MAX_AGE, (prefix + name, key)
            elif written[0][name] is None:
                assert got.status is Status.NULL_VALUE, (prefix + name, key)
            else:
                assert got.status is Status.PRESENT, (prefix + name, key, got)
                assert got.value == written[0][name], (prefix + name, key, got)


def _check_derived(row: Mapping[str, FeatureValue], context: Mapping[str, Any],
                   event_ms: Sequence[int]) -> None:
    inputs = {name: _tag(value) for name, value in row.items() if name not in DERIVATIONS}
    inputs.update((name, _context_tag(name, value)) for name, value in context.items())
    want = evaluate(inputs)
    got = {name: (row[name].status.name,
                  row[name].value if row[name].status is Status.PRESENT else None)
           for name in DERIVATIONS}
    for name in DERIVATIONS:
        status, value = want[name]
        assert got[name][0] == status, (name, got[name], want[name], inputs, context)
        if status == P:
            assert got[name][1] == value, (name, got[name], want[name], inputs, context)
            assert type(got[name][1]) is type(value), (name, got[name], want[name])
        assert row[name].group == SERVICE
        # The derived features' event time: the newest of the two joins they read.
        assert row[name].event_ms == max(event_ms), (name, row[name].event_ms, event_ms)


_amounts = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 2.5, -7.25, 0.005, 1e308, -1e-5, 149.999, 150.0,
                     math.nan, math.inf]),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.integers(-1000, 1000),  # an int is sent as int64_value, taken for a double
)
_values = {
    "amount": _amounts,
    "channel": st.sampled_from(["web", "app", "", "WEB"]),
    "items": st.one_of(st.sampled_from([0, 1, -1, 3, -7, MAX, MIN]), st.integers(-50, 50)),
}
_contexts = st.fixed_dictionaries(_values)
# An entity's own values: any of them, over the request's.
_overrides = st.fixed_dictionaries({}, optional=_values)
_entities = st.tuples(st.integers(0, USERS + 1), st.integers(0, MERCHANTS + 1))


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(entities=st.lists(_entities, min_size=1, max_size=8),
       default=_contexts,
       overrides=st.lists(_overrides, min_size=8, max_size=8))
def test_every_derived_value_equals_the_plain_python_evaluation(
        served: Served, client: FeatureClient, entities: list[tuple[int, int]],
        default: dict[str, Any], overrides: list[dict[str, Any]]) -> None:
    own = overrides[:len(entities)]
    keys = [{"user_id": u, "merchant_id": m} for u, m in entities]
    read_ms = time.time_ns() // 1_000_000
    response = client.get_batch_raw(keys, service=SERVICE, context=default, entity_context=own)
    rows = decode_vectors(response.metadata, response.vectors)
    assert list(response.metadata.groups) == [USERS_GROUP, MERCHANTS_GROUP, SERVICE]
    for (user, merchant), extra, row, vector in zip(entities, own, rows, response.vectors,
                                                    strict=True):
        context = {**default, **extra}
        _check_inputs(served, row, user, merchant, read_ms)
        _check_derived(row, context, list(vector.event_timestamps_ms)[:2])
    # GetFeatures of the first entity answers the same.
    user, merchant = entities[0]
    single = client.get_raw(keys=keys[0], service=SERVICE, context={**default, **own[0]})
    (row,) = decode_vectors(single.metadata, [single.vector])
    _check_derived(row, {**default, **own[0]}, list(single.vector.event_timestamps_ms)[:2])


def test_metadata_and_listing_of_the_compiled_service(client: FeatureClient) -> None:
    response = client.get_raw(keys={"user_id": 1, "merchant_id": 1}, service=SERVICE,
                              context={"amount": 1.0, "channel": "web", "items": 1})
    names = list(response.metadata.feature_names)
    joined = len(USER_FEATURES) + len(MERCHANT_FEATURES)
    assert names[joined:] == list(DERIVATIONS)
    assert list(response.metadata.feature_groups)[joined:] == [2] * len(DERIVATIONS)
    (info,) = client.describe(SERVICE).services
    assert {c.name: FeatureType(c.type) for c in info.context} == CONTEXT
    assert client.context_types(SERVICE) == CONTEXT
    assert [(f.name, f.expression) for f in info.features][joined:] == list(DERIVATIONS.items())


def test_bad_context_is_invalid_argument_naming_the_field(client: FeatureClient) -> None:
    keys = {"user_id": 1, "merchant_id": 2}
    good = {"amount": 1.0, "channel": "web", "items": 1}
    cases = [
        ({"amount": 1.0, "channel": "web"}, "context: missing 'items'"),
        ({**good, "amount": "12"}, "context['amount']: expected double, got string"),
        ({**good, "coupon": 1}, "context: unknown request-time value(s) 'coupon'"),
    ]
    for context, start in cases:
        with pytest.raises(grpc.RpcError) as info:
            client.get(keys=keys, service=SERVICE, context=context)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert info.value.details().startswith(start), info.value.details()  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as info:
        client.get_batch([keys, keys], service=SERVICE, context=good,
                         entity_context=[None, {"items": 2.5}])
    assert info.value.details() == (  # type: ignore[attr-defined]
        "entities[1].context['items']: expected int64, got double")
    with pytest.raises(grpc.RpcError) as info:
        client.get(keys={"user_id": 1}, group=USERS_GROUP, context={"amount": 1.0})
    assert info.value.details() == (  # type: ignore[attr-defined]
        f"context: feature group {USERS_GROUP!r} reads no request-time values; "
        "remove 'amount'")


def test_fetcher_get_passes_context_values(served: Served) -> None:
    target = served.server.target
    result = run_cli("get", "--target", target, "--service", SERVICE, "--key", "user_id=3",
                     "--key", "merchant_id=4", "--context", "amount=12.5", "--context",
                     "channel=web", "--context", "items=0", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    features = out["features"]
    assert features["per_item"]["status"] == "ERROR"  # 12.5 / 0
    assert features["rounded"] == {"status": "PRESENT", "value": 12.5, "type": "DOUBLE"}
    assert features["local_web"]["type"] == "BOOL"
    assert out["event_timestamps_ms"][SERVICE] == max(
        out["event_timestamps_ms"][USERS_GROUP], out["event_timestamps_ms"][MERCHANTS_GROUP])
    refused = run_cli("get", "--target", target, "--service", SERVICE, "--key", "user_id=3",
                      "--key", "merchant_id=4", "--context", "amount=x")
    assert refused.returncode != 0
    assert "--context 'amount=x'" in refused.stderr
    listing = run_cli("list", "--target", target, SERVICE)
    assert "context: amount:double, channel:string, items:int64" in listing.stdout
    assert "= amount / items" in listing.stdout
