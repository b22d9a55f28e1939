"""proto_views.key_reader: the request key fast path agrees with service.entity_values.

For any key map the reader returns either None (the caller then runs the full check)
or exactly the values entity_values returns; it never accepts a map entity_values
refuses.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.api._proto_views import key_reader
from fetcher.api._service import RequestError, entity_values
from fetcher.types import KeyColumn, KeyType
from fetcher.v1 import feature_service_pb2 as pb

COLUMN_SETS = [
    (KeyColumn("user_id", KeyType.INT64),),
    (KeyColumn("name", KeyType.STRING),),
    (KeyColumn("blob", KeyType.BYTES),),
    (KeyColumn("s2_cell_id", KeyType.INT64), KeyColumn("place_id", KeyType.STRING)),
    (KeyColumn("a", KeyType.BYTES), KeyColumn("b", KeyType.INT64), KeyColumn("c", KeyType.STRING)),
]
NAMES = ["user_id", "name", "blob", "s2_cell_id", "place_id", "a", "b", "c", "x"]

_values = st.one_of(
    st.none(),  # a Value with no kind set
    st.integers(-(2**63), 2**63 - 1).map(lambda v: ("int64_value", v)),
    st.text(max_size=40).map(lambda v: ("string_value", v)),
    st.binary(max_size=40).map(lambda v: ("bytes_value", v)),
    # Around the length limits: the reader must leave these to the full check.
    st.sampled_from([16_384, 16_385, 30_000]).map(lambda n: ("string_value", "\U0001f600" * n)),
    st.sampled_from([65_536, 65_537]).map(lambda n: ("bytes_value", b"x" * n)),
)


def _request(keys: dict[str, Any]) -> pb.GetFeaturesRequest:
    request = pb.GetFeaturesRequest(feature_group="g")
    for name, value in keys.items():
        if value is None:
            request.keys[name].CopyFrom(pb.Value())
        else:
            field, item = value
            request.keys[name].CopyFrom(pb.Value(**{field: item}))
    return request


def _plan(columns: tuple[KeyColumn, ...]) -> Any:
    return SimpleNamespace(request_keys=columns, kind="feature_group", name="g")


def _check(columns: tuple[KeyColumn, ...], keys: dict[str, Any]) -> bool:
    """True when the reader took the fast path (and agreed)."""
    request = _request(keys)
    fast = key_reader(columns)(request.keys)
    try:
        full = entity_values(_plan(columns), request.keys, "keys")
    except RequestError:
        assert fast is None
        return False
    assert fast is None or fast == full
    return fast is not None


@settings(max_examples=300, deadline=None)
@given(
    columns=st.sampled_from(COLUMN_SETS),
    keys=st.dictionaries(st.sampled_from(NAMES), _values, max_size=4),
)
def test_reader_agrees_with_entity_values_on_any_key_map(
    columns: tuple[KeyColumn, ...], keys: dict[str, Any]
) -> None:
    _check(columns, keys)


@pytest.mark.parametrize("columns", COLUMN_SETS, ids=lambda c: "+".join(k.name for k in c))
def test_well_formed_keys_take_the_fast_path(columns: tuple[KeyColumn, ...]) -> None:
    sample = {
        KeyType.INT64: ("int64_value", -7),
        KeyType.STRING: ("string_value", "é" * 16_384),
        KeyType.BYTES: ("bytes_value", b"\x00" * 65_536),
    }
    assert _check(columns, {c.name: sample[c.type] for c in columns})


def test_malformed_keys_are_left_to_the_full_check() -> None:
    (one,) = COLUMN_SETS[0][:1]
    read = key_reader((one,))
    assert read(_request({}).keys) is None
    assert read(_request({"user_id": None}).keys) is None
    assert read(_request({"user_id": ("string_value", "1")}).keys) is None
    assert read(_request({"user_id": ("int64_value", 1), "x": ("int64_value", 2)}).keys) is None
    assert read(_request({"name": ("int64_value", 1)}).keys) is None
