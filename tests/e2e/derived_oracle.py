"""The derivations of the e2e definitions, evaluated again in plain Python, row by row, from
docs/derivations.md: each value is tagged present, null or error, and every operation
follows the document's null and error rules (no fetcher.expressions code is used)."""

from __future__ import annotations

import decimal
import math
from collections.abc import Callable, Mapping
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
P, N, E = "PRESENT", "NULL_VALUE", "ERROR"
Tagged = tuple[str, Any]
NULL: Tagged = (N, None)
ERR: Tagged = (E, None)

# name -> expression, as the Join declares them (docs/derivations.md's language).
DERIVATIONS = {
    "amount_over_avg": "amount / user_avg_order",
    "per_item": "amount / items",
    "is_big": "amount > 3 * coalesce(user_avg_order, merchant_avg_ticket, 50.0)",
    "risky": "is_big and not coalesce(user_verified, false) or merchant_risk > 0.75",
    "age_band": "if(user_age < 25, 0, if(user_age < 65, 1, 2))",
    "orders_ratio": "if(user_orders_30d = 0, null, user_orders_7d / user_orders_30d)",
    "orders_sum": "user_orders_7d + merchant_orders_7d * 2",
    "local_web": "coalesce(user_country, 'none') = 'IN' and channel = 'web'",
    "log_ticket": "log(merchant_avg_ticket)",
    "no_user": "is_null(user_age) or is_null(user_orders_30d)",
    "tags": "merchant_tags",
    "cats": "coalesce(user_cats, if(is_big, user_cats, null))",
    "rounded": "round(amount * 100) / 100",
    "gap": "abs(user_orders_30d - coalesce(merchant_orders_7d, 0))",
    "items_mod": "items % 3",
    "score": "min(user_age, 100) * 0.5 + max(merchant_risk, 0.1)",
    "root": "sqrt(amount)",
}


class RowError(Exception):
    """A runtime error of one row: the derivation is ERROR there."""


def lit(value: Any) -> Tagged:
    return (P, value)


def _checked(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise RowError("not a finite double")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise RowError("int64 overflow")
    return value


def strict(func: Callable[..., Any], *args: Tagged) -> Tagged:
    """An operation that is ERROR if an operand is, else null if one is (rule 2)."""
    if any(a[0] == E for a in args):
        return ERR
    if any(a[0] == N for a in args):
        return NULL
    try:
        return (P, _checked(func(*(a[1] for a in args))))
    except (RowError, ZeroDivisionError, ValueError, OverflowError):
        return ERR


def _arith(op: str) -> Callable[[Any, Any], Any]:
    def run(x: Any, y: Any) -> Any:
        if op == "/":
            return float(x) / float(y)
        if isinstance(x, float) or isinstance(y, float):
            x, y = float(x), float(y)
            if op == "%":
                if y == 0:
                    raise RowError("% by zero")
                return math.fmod(x, y)
        elif op == "%":
            if y == 0:
                raise RowError("% by zero")
            magnitude = abs(x) % abs(y)  # truncated: the sign of the left operand
            return -magnitude if x < 0 else magnitude
        return {"+": x + y, "-": x - y, "*": x * y}[op]
    return run


add, sub, mul, div, mod = (_arith(op) for op in "+-*/%")


def num(op: Callable[[Any, Any], Any], a: Tagged, b: Tagged) -> Tagged:
    return strict(op, a, b)


def coalesce(*args: Tagged) -> Tagged:
    """The first argument that is not null; an ERROR before it is ERROR (arguments of one
    type here: no int64 to double conversion needed)."""
    for a in args:
        if a[0] != N:
            return a
    return NULL


def if_(cond: Tagged, a: Tagged, b: Tagged) -> Tagged:
    """`a` when true, `b` when false; a null condition null, an ERROR one ERROR."""
    if cond[0] != P:
        return cond
    return a if cond[1] else b


def and_(a: Tagged, b: Tagged) -> Tagged:
    if a == (P, False):
        return a
    if a[0] == E:
        return ERR
    if a == (P, True):
        return b
    # a is null
    if b == (P, False):
        return b
    return ERR if b[0] == E else NULL


def or_(a: Tagged, b: Tagged) -> Tagged:
    if a == (P, True):
        return a
    if a[0] == E:
        return ERR
    if a == (P, False):
        return b
    if b == (P, True):
        return b
    return ERR if b[0] == E else NULL


def not_(a: Tagged) -> Tagged:
    return strict(lambda v: not v, a)


def is_null(a: Tagged) -> Tagged:
    return a if a[0] == E else (P, a[0] == N)


def _round_half_away(x: float) -> float:
    exact = decimal.Decimal(x).quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP)
    return float(exact)


def _log(x: Any) -> float:
    if x <= 0:
        raise RowError("log of a number <= 0")
    return math.log(x)


def _sqrt(x: Any) -> float:
    if x < 0:
        raise RowError("sqrt of a negative number")
    return math.sqrt(x)


def evaluate(inputs: Mapping[str, Tagged]) -> dict[str, Tagged]:
    """Every derivation of DERIVATIONS for one row of tagged inputs (features after the
    prefixes, and the request-time values), in declaration order."""
    x = dict(inputs)
    amount, items = x["amount"], x["items"]
    out: dict[str, Tagged] = {}
    out["amount_over_avg"] = num(div, amount, x["user_avg_order"])
    out["per_item"] = num(div, amount, items)
    out["is_big"] = strict(lambda a, b: a > b, amount, num(
        mul, lit(3), coalesce(x["user_avg_order"], x["merchant_avg_ticket"], lit(50.0))))
    out["risky"] = or_(
        and_(out["is_big"], not_(coalesce(x["user_verified"], lit(False)))),
        strict(lambda r: r > 0.75, x["merchant_risk"]))
    age = x["user_age"]
    out["age_band"] = if_(strict(lambda a: a < 25, age), lit(0),
                          if_(strict(lambda a: a < 65, age), lit(1), lit(2)))
    o30 = x["user_orders_30d"]
    out["orders_ratio"] = if_(strict(lambda o: o == 0, o30), NULL,
                              num(div, x["user_orders_7d"], o30))
    out["orders_sum"] = num(add, x["user_orders_7d"], num(mul, x["merchant_orders_7d"], lit(2)))
    out["local_web"] = and_(strict(lambda c: c == "IN", coalesce(x["user_country"], lit("none"))),
                            strict(lambda c: c == "web", x["channel"]))
    out["log_ticket"] = strict(_log, x["merchant_avg_ticket"])
    out["no_user"] = or_(is_null(age), is_null(o30))
    out["tags"] = x["merchant_tags"]
    out["cats"] = coalesce(x["user_cats"], if_(out["is_big"], x["user_cats"], NULL))
    out["rounded"] = num(div, strict(_round_half_away, num(mul, amount, lit(100))), lit(100))
    out["gap"] = strict(abs, num(sub, o30, coalesce(x["merchant_orders_7d"], lit(0))))
    out["items_mod"] = num(mod, items, lit(3))
    out["score"] = num(add, num(mul, strict(min, age, lit(100)), lit(0.5)),
                       strict(lambda a, b: max(float(a), float(b)), x["merchant_risk"],
                              lit(0.1)))
    out["root"] = strict(_sqrt, amount)
    return {name: out[name] for name in DERIVATIONS}
