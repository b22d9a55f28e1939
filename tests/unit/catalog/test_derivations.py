"""A service's `context` and `derivations` in the catalog: read, type-checked against its
groups' features with fetcher.expressions, every problem named with its file and field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fetcher.catalog import CatalogError, load_catalog
from fetcher.types import ContextValue, Derivation, FeatureType

DEMO = Path(__file__).resolve().parents[3] / "config" / "demo"
SERVICE = "services/user_merchant.json"
DERIVED = [
    {"name": "amount_over_avg", "expression": "amount / user_avg_order_value",
     "type": "double"},
    {"name": "is_big", "expression": "amount_over_avg > 3 and user_is_verified",
     "type": "bool"},
    {"name": "orders", "expression": "coalesce(user_orders_7d, 0) + 1", "type": "int64"},
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    shutil.copytree(DEMO, tmp_path / "cfg")
    return tmp_path / "cfg"


def _service(config: Path, **fields: Any) -> None:
    path = config / SERVICE
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def _problems(config: Path) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        load_catalog(config)
    return caught.value.problems


def test_context_and_derivations_load(config: Path) -> None:
    _service(config, context=[{"name": "amount", "type": "double"}], derivations=DERIVED)
    service = load_catalog(config).services["user_merchant"]
    assert service.context == (ContextValue("amount", FeatureType.DOUBLE),)
    assert service.derivations == (
        Derivation("amount_over_avg", "amount / user_avg_order_value", FeatureType.DOUBLE),
        Derivation("is_big", DERIVED[1]["expression"], FeatureType.BOOL),
        Derivation("orders", DERIVED[2]["expression"], FeatureType.INT64),
    )
    assert load_catalog(DEMO).services["user_merchant"].derivations == ()


def test_expressions_are_checked_against_the_groups(config: Path) -> None:
    _service(config, context=[{"name": "amount", "type": "double"}], derivations=[
        {"name": "a", "expression": "amount / usr_age", "type": "double"},
        {"name": "b", "expression": "amount + 1", "type": "int64"},
        {"name": "c", "expression": "user_country * 2", "type": "double"},
        {"name": "d", "expression": "e", "type": "double"},
        {"name": "e", "expression": "d", "type": "double"},
        {"name": "f", "expression": "(1", "type": "int64"},
    ])
    assert _problems(config) == [
        f"{SERVICE}: derivations[0]: a: column 10 of \"amount / usr_age\": unknown name "
        "'usr_age'. Fix: did you mean 'user_age'? a derivation reads the service's features, "
        "its request-time values and its other derivations",
        f"{SERVICE}: derivations[1].type: is int64 but the expression is double. Fix: write "
        '"type": "double"',
        f"{SERVICE}: derivations[2]: c: column 1 of \"user_country * 2\": * needs numbers: "
        "'user_country' is string. Fix: correct the expression (docs/derivations.md)",
        f"{SERVICE}: derivations[3]: d: circular derivations: d -> e -> d. Fix: break the "
        "cycle: a derivation cannot use itself, directly or through other derivations",
        f"{SERVICE}: derivations[5]: f: column 3 of \"(1\": expected ')' to close the '(' at "
        "column 1, found the end of the expression. Fix: correct the expression "
        "(docs/derivations.md)",
    ]


def test_declarations_are_checked(config: Path) -> None:
    _service(config, context=[{"name": "user_age", "type": "int64"},
                              {"name": "n", "type": "long"}, {"name": "m"}],
             derivations=[{"name": "x", "expression": "1", "type": "int64", "doc": "?"},
                          {"name": "user_age", "expression": "1", "type": "int64"}])
    problems = _problems(config)
    assert problems == [
        f"{SERVICE}: context[1].type: 'long' is not a feature type. Fix: use one of double, "
        "int64, string, bool, bytes, double_list, int64_list, string_list, bool_list",
        f"{SERVICE}: context[2].type: is missing. Fix: add it: double, int64, string, bool, "
        "bytes, double_list, int64_list, string_list, bool_list",
        f"{SERVICE}: derivations[0].doc: unknown field. Fix: known: name, expression, type",
    ]
    _service(config, context=[{"name": "user_age", "type": "int64"}],
             derivations=[{"name": "user_age", "expression": "1", "type": "int64"}])
    assert _problems(config) == [
        f"{SERVICE}: context[0].name: 'user_age' is also a feature of the service. Fix: "
        "rename the request-time value",
        f"{SERVICE}: derivations[0]: user_age: has the name of a feature or request-time "
        "value of the service. Fix: give the derivation another name",
    ]
