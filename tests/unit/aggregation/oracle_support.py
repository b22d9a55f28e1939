"""The slow obvious computation of every exact operation from raw events, and the fast one
(tiles updated in random orders, round-tripped through their bytes, merged in random orders)."""

from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction
from typing import Any

from fetcher.aggregation import Operator, Window, tile_start
from fetcher.aggregation._encoding import value_bytes

Event = tuple[Any, int]  # (value, ts)


def is_null(value: object) -> bool:
    """None and NaN are nulls."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def covered(events: list[Event], window: Window, at: int) -> list[Event]:
    """The events a read at `at` includes, by the documented rule, nulls dropped."""
    return [(v, ts) for v, ts in events if window.covers(ts, at) and not is_null(v)]


def via_tiles(op: Operator[Any], events: list[Event], window: Window, at: int,
              rnd: random.Random) -> Any:
    """The state of a read: events grouped by tile, each tile updated in a random order and
    round-tripped through its encoding, tiles merged pairwise in a random order."""
    tiles: dict[int, list[Event]] = {}
    for value, ts in events:
        tiles.setdefault(tile_start(ts, window.hop_ms), []).append((value, ts))
    states = []
    for start in window.tiles(at):
        tile = [e for e in tiles.get(start, []) if e[1] < at]
        rnd.shuffle(tile)
        state = op.empty()
        for value, ts in tile:
            state = op.update(state, value, ts)
        states.append(op.decode(op.encode(state)))
    if not states:
        return op.empty()
    while len(states) > 1:
        i = rnd.randrange(len(states) - 1)
        # adjacent pairs in either order: associativity and commutativity both exercised
        a, b = (states[i], states[i + 1]) if rnd.random() < 0.5 else (states[i + 1], states[i])
        states[i : i + 2] = [op.merge(a, b)]
    return states[0]


def brute(name: str, events: list[Event], *, k: int = 0, limit: int = 0) -> Any:
    """The result of `name` over already-covered, non-null events."""
    values = [v for v, _ in events]
    by_time = sorted(events, key=lambda e: (e[1], value_bytes(e[0])))
    if name == "count":
        return len(values)
    if name == "unique_count":
        n = len({value_bytes(v) for v in values})
        return None if n > limit else n
    if not values:
        return None
    exact = [Fraction(v) for v in values] if name in ("average", "variance", "stddev") else []
    if name == "sum":
        return sum(values) if isinstance(values[0], int) else math.fsum(values)
    if name == "average":
        return sum(exact) / len(exact)
    if name in ("variance", "stddev"):
        mean = sum(exact) / len(exact)
        var = sum((x - mean) ** 2 for x in exact) / len(exact)
        return var if name == "variance" else math.sqrt(var)
    if name in ("min", "max", "top_k", "bottom_k"):
        by_value = sorted(values, key=lambda v: (v, value_bytes(v)))
    simple = {
        "min": lambda: by_value[0],
        "max": lambda: by_value[-1],
        "first": lambda: by_time[0][0],
        "last": lambda: by_time[-1][0],
        "first_k": lambda: [v for v, _ in by_time[:k]],
        "last_k": lambda: [v for v, _ in by_time[::-1][:k]],
        "top_k": lambda: by_value[::-1][:k],
        "bottom_k": lambda: by_value[:k],
    }
    if name in simple:
        return simple[name]()
    if name == "histogram":
        counts = Counter(value_bytes(v) for v in values)
        if len(counts) > limit:
            return None
        first = {value_bytes(v): v for v in values}
        return {first[key]: n for key, n in counts.items()}
    raise AssertionError(name)
