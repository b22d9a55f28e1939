"""A service's derivations checked together: names, unknown names, cycles, order, problems."""

from __future__ import annotations

import pytest

from fetcher.expressions import DerivationError, analyze_derivations, compile_derivations
from fetcher.types import FeatureType

D, INT = FeatureType.DOUBLE, FeatureType.INT64
INPUTS = {"user_age": INT, "user_spend": D, "amount": D}


def problems(derivations: dict[str, str] | list[tuple[str, object]]) -> list[tuple[str, str,
                                                                                  str]]:
    found = analyze_derivations(derivations, INPUTS).problems  # type: ignore[arg-type]
    return [(p.derivation, p.kind, p.message) for p in found]


def test_unknown_names_are_reported_with_the_closest_name() -> None:
    found = analyze_derivations({"x": "usr_age * 2 + nope + usr_age"}, INPUTS).problems
    assert [(p.derivation, p.kind, p.message) for p in found] == [
        ("x", "unknown", 'column 1 of "usr_age * 2 + nope + usr_age": unknown name \'usr_age\''),
        ("x", "unknown", 'column 15 of "usr_age * 2 + nope + usr_age": unknown name \'nope\''),
    ]
    assert found[0].hint.startswith("did you mean 'user_age'? a derivation reads the "
                                    "service's features")
    assert not found[1].hint.startswith("did you mean")


def test_cycles_are_spelled_out_once_from_their_smallest_name() -> None:
    assert problems({"c": "a + 1", "a": "b * 2", "b": "c - 1", "ok": "amount * 2",
                     "after": "a + ok"}) == [
        ("a", "cycle", "circular derivations: a -> b -> c -> a"),
    ]
    assert problems({"x": "x + 1"}) == [("x", "cycle", "circular derivations: x -> x")]
    two = problems({"a": "b", "b": "a", "p": "q", "q": "p"})
    assert [m for _, _, m in two] == ["circular derivations: a -> b -> a",
                                      "circular derivations: p -> q -> p"]


def test_order_follows_dependencies_then_declaration() -> None:
    analysis = analyze_derivations({"c": "b + 1", "b": "a + 1", "a": "user_age", "z": "1"},
                                   INPUTS)
    assert analysis.order == ("a", "b", "c", "z")
    assert list(analysis.types) == ["c", "b", "a", "z"]
    assert analysis.uses == {"c": ("b",), "b": ("a",), "a": ("user_age",), "z": ()}


def test_names_of_derivations() -> None:
    assert problems([("1x", "1"), ("amount", "2"), ("ok", "1"), ("ok", "2"),
                     ("bad name", "3")]) == [
        ("1x", "name", "'1x' is not a feature name"),
        ("amount", "name", "has the name of a feature or request-time value of the service"),
        ("ok", "name", "is declared twice"),
        ("bad name", "name", "'bad name' is not a feature name"),
    ]


def test_a_broken_derivation_does_not_blame_its_users() -> None:
    # `a` does not parse, `b` does not type-check: `c` and `d`, which use them, are not
    # reported (they cannot be typed), and `e` is.
    assert problems({"a": "1 +", "b": "amount + 's'", "c": "a * 2", "d": "b",
                     "e": "user_age and true", 5: "x"}) == [  # type: ignore[dict-item]
        ("5", "name", "5 is not a feature name"),
        ("a", "syntax", 'column 4 of "1 +": expected a value, a name or \'(\', found the end '
                        "of the expression"),
        ("b", "type", 'column 10 of "amount + \'s\'": + needs numbers, not string'),
        ("e", "type", 'column 1 of "user_age and true": and needs bools: \'user_age\' is int64'),
    ]
    assert problems({"x": 3}) == [("x", "syntax", "the expression is int, not a string")]


def test_compile_raises_with_every_problem() -> None:
    with pytest.raises(DerivationError) as caught:
        compile_derivations({"a": "nope", "b": "b"}, INPUTS)
    assert [p.kind for p in caught.value.problems] == ["unknown", "cycle"]
    assert str(caught.value).startswith('a: column 1 of "nope": unknown name \'nope\'. Fix: ')


def test_long_expressions_are_quoted_cut() -> None:
    text = " + ".join(["amount"] * 30) + " + nope"
    (message,) = [m for _, _, m in problems({"x": text})]
    assert message.startswith('column 271 of "amount + amount') and '..."' in message
    assert len(message) < 140
