"""State encodings: round trips, the header, and garbage that must fail as StateDecodeError."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.aggregation import FORMAT_VERSION, Operator, StateDecodeError, operator_for
from fetcher.aggregation._sketches import SKETCH_FORMAT_VERSION

OPERATORS: dict[str, Operator[Any]] = {
    name: operator_for(name, column, k=3, percentiles=(0.5, 0.9), limit=5)
    for name, column in [
        ("count", "string"), ("sum", "int64"), ("average", "double"), ("min", "string"),
        ("max", "int64"), ("variance", "double"), ("stddev", "int64"), ("first", "string"),
        ("last", "list<int64>"), ("first_k", "string"), ("last_k", "int64"),
        ("top_k", "double"), ("bottom_k", "string"), ("unique_count", "bytes"),
        ("approx_unique_count", "string"), ("approx_percentile", "double"),
        ("histogram", "string"),
    ]
}
OPERATORS["sum_double"] = operator_for("sum", "double")
OPERATORS["min_double"] = operator_for("min", "double")
OPERATORS["max_double"] = operator_for("max", "double")
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=5), "int64": st.integers(-(2**63), 2**63 - 1),
    "double": st.floats(allow_nan=False, allow_infinity=False, width=64),
    "list<int64>": st.lists(st.integers(), max_size=3), "bytes": st.binary(max_size=4),
}
COLUMN = {"count": "string", "sum": "int64", "average": "double", "min": "string",
          "max": "int64", "variance": "double", "stddev": "int64", "first": "string",
          "last": "list<int64>", "first_k": "string", "last_k": "int64", "top_k": "double",
          "bottom_k": "string", "unique_count": "bytes", "approx_unique_count": "string",
          "approx_percentile": "double", "histogram": "string", "sum_double": "double",
          "min_double": "double", "max_double": "double"}


def test_tags_are_the_operation_order() -> None:
    tags = [OPERATORS[n].tag for n in COLUMN if not n.endswith("_double")]
    assert sorted(tags) == list(range(1, 18))
    for op in OPERATORS.values():
        # Sketch states (tags 15, 16) are version 2: they carry a checksum.
        version = SKETCH_FORMAT_VERSION if op.tag in (15, 16) else FORMAT_VERSION
        assert op.encode(op.empty())[:2] == bytes((version, op.tag))


def _sketch_state(name: str, n: int) -> bytes:
    op = OPERATORS[name]
    state = op.empty()
    for i in range(n):
        state = op.update(state, float(i) if name == "approx_percentile" else f"v{i}", i)
    return op.encode(state)


@pytest.mark.parametrize(("name", "n"), [
    ("approx_unique_count", 0), ("approx_unique_count", 3), ("approx_unique_count", 2000),
    ("approx_percentile", 0), ("approx_percentile", 5), ("approx_percentile", 600),
])
def test_every_damaged_sketch_state_is_refused_before_the_library_reads_it(
    name: str, n: int
) -> None:
    # datasketches trusts its input: one flipped bit of a CPC sketch made it allocate 8 GB
    # and run for a minute, one of a KLL sketch corrupted the heap (the process aborted).
    # Every single-bit flip, cut and padding of the state must be a StateDecodeError.
    op = OPERATORS[name]
    valid = _sketch_state(name, n)
    assert op.encode(op.decode(valid)) == valid
    damaged = [valid[:cut] for cut in range(len(valid))] + [valid + b"\x00"]
    damaged += [valid[:i] + bytes((valid[i] ^ (1 << bit),)) + valid[i + 1:]
                for i in range(len(valid)) for bit in range(8)]
    for data in damaged:
        with pytest.raises(StateDecodeError):
            op.decode(data)


def test_a_sketch_state_without_its_checksum_is_refused_naming_the_version() -> None:
    op = OPERATORS["approx_unique_count"]
    valid = _sketch_state("approx_unique_count", 3)
    unchecked = bytes((FORMAT_VERSION, op.tag)) + valid[6:]  # version 1: the bare sketch
    with pytest.raises(StateDecodeError, match="format version 1, expected 2"):
        op.decode(unchecked)


@pytest.mark.parametrize("name", sorted(OPERATORS))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    op = OPERATORS[name]
    events = data.draw(st.lists(st.tuples(VALUES[COLUMN[name]], st.integers(0, 2**40)),
                                max_size=12))
    state = op.empty()
    for value, ts in events:
        state = op.update(state, value, ts)
    encoded = op.encode(state)
    back = op.decode(encoded)
    assert op.encode(back) == encoded
    try:
        want = op.result(state)
    except ArithmeticError:
        return
    got = op.result(back)
    assert got == want or (got != got and want != want)  # NaN: a double overflowed (documented)


@pytest.mark.parametrize("name", sorted(OPERATORS))
@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=40), raw=st.booleans())
def test_garbage_raises_state_decode_error(name: str, payload: bytes, raw: bool) -> None:
    op = OPERATORS[name]
    data = payload if raw else bytes((FORMAT_VERSION, op.tag)) + payload
    try:
        state = op.decode(data)
    except StateDecodeError:
        return
    op.encode(state)  # whatever decodes is a state the operator can use


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_wrong_version_tag_and_truncation(name: str) -> None:
    op = OPERATORS[name]
    good = op.encode(op.update(op.empty(), 1.5 if "double" in COLUMN[name] else 1, 3)
                     if COLUMN[name] in ("int64", "double") else op.empty())
    for bad in (b"", good[:1], bytes((good[0] + 1,)) + good[1:],
                good[:1] + bytes(((op.tag % 17) + 1,)) + good[2:], good + b"\x00"):
        with pytest.raises(StateDecodeError, match="aggregation state"):
            op.decode(bad)


def test_examples_byte_by_byte() -> None:
    count = operator_for("count", "int64")
    assert count.encode(300) == bytes([1, 1, 0xAC, 0x02])
    s = operator_for("sum", "int64")
    assert s.encode(-3) == bytes([1, 2, 1, 5])
    assert s.encode(None) == bytes([1, 2])
    last = operator_for("last", "string")
    assert last.encode(last.update(last.empty(), "hi", 5)) == bytes([1, 9, 5, 3, 2]) + b"hi"


def _general_decode(op: Operator[Any], data: bytes) -> Any:
    try:
        return ("ok", Operator.decode(op, data))
    except StateDecodeError:
        return ("error", None)


@pytest.mark.parametrize("name", sorted(OPERATORS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fast_decoders_agree_with_the_general_one(name: str, data: st.DataObject) -> None:
    # Some operators read their common states in line (a one-byte count, a tagged double):
    # on every input, valid or not, the answer is the general decoder's.
    op = OPERATORS[name]
    events = data.draw(st.lists(st.tuples(VALUES[COLUMN[name]], st.integers(0, 2**40)),
                                max_size=3))
    state = op.empty()
    for value, ts in events:
        state = op.update(state, value, ts)
    valid = op.encode(state)
    flip = data.draw(st.integers(0, len(valid) - 1))
    bit = data.draw(st.integers(0, 7))
    for candidate in (valid, valid[:-1], valid + b"\x00",
                      valid[:flip] + bytes((valid[flip] ^ (1 << bit),)) + valid[flip + 1:]):
        want = _general_decode(op, candidate)
        try:
            got = ("ok", op.decode(candidate))
        except StateDecodeError:
            got = ("error", None)
        assert got[0] == want[0]
        if got[0] == "ok":
            assert op.encode(got[1]) == op.encode(want[1])
