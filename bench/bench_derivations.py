"""Micro-benchmark of derived features: 10 derivations of one service over a batch.

Run: .venv/bin/python -m bench.bench_derivations [rows]  (default 100 rows).

Three batches: every input PRESENT; 10% of the rows of each input NULL; and a batch where
every derivation has rows that fail (a zero divisor, a log of zero), which the kernels
then compute row by row. Reported: µs per evaluate call and per row (best of 15 runs),
and the one-time compile.
"""

from __future__ import annotations

import random
import sys
import time
import timeit

from fetcher.expressions import InputColumn, compile_derivations
from fetcher.types import FeatureType, Status

INPUTS = {
    "user_age": FeatureType.INT64,
    "user_orders_7d": FeatureType.INT64,
    "user_orders_30d": FeatureType.INT64,
    "user_avg_order_value": FeatureType.DOUBLE,
    "user_lifetime_spend": FeatureType.DOUBLE,
    "user_is_verified": FeatureType.BOOL,
    "user_country": FeatureType.STRING,
    "merchant_avg_ticket": FeatureType.DOUBLE,
    "amount": FeatureType.DOUBLE,  # a request-time value
}
DERIVATIONS = {
    "amount_over_avg": "amount / user_avg_order_value",
    "amount_over_ticket": "amount / coalesce(merchant_avg_ticket, 50.0)",
    "orders_ratio": "if(user_orders_30d = 0, null, user_orders_7d / user_orders_30d)",
    "is_big": "amount > 3 * coalesce(user_avg_order_value, 50.0)",
    "is_risky": "is_big and not user_is_verified or user_country != 'IN'",
    "age_band": "if(user_age < 25, 0, if(user_age < 65, 1, 2))",
    "log_spend": "log(user_lifetime_spend + 1)",
    "spend_per_order": "user_lifetime_spend / max(user_orders_30d, 1)",
    "z_amount": "(amount - user_avg_order_value) / sqrt(abs(user_avg_order_value) + 1)",
    "orders_total": "user_orders_7d + user_orders_30d * 2 - round(user_age / 10)",
}


def batch(rows: int, null_share: float, failing: bool, seed: int = 7) -> dict[str, InputColumn]:
    """Input columns of `rows` rows; `failing`: zeros where the derivations divide or log."""
    rng = random.Random(seed)
    out: dict[str, InputColumn] = {}
    for name, t in INPUTS.items():
        values: list[object] = []
        for _ in range(rows):
            if t is FeatureType.INT64:
                values.append(rng.randint(0 if failing else 1, 90))
            elif t is FeatureType.DOUBLE:
                values.append(0.0 if failing and rng.random() < 0.1 else rng.uniform(1, 500))
            elif t is FeatureType.BOOL:
                values.append(rng.random() < 0.5)
            else:
                values.append(rng.choice(["IN", "US", "FR"]))
        statuses = bytes(Status.NULL_VALUE if rng.random() < null_share else Status.PRESENT
                         for _ in range(rows))
        out[name] = InputColumn(values, statuses)
    if failing:  # log(x + 1) fails where x + 1 <= 0
        spend = out["user_lifetime_spend"]
        values = list(spend.values)
        values[::10] = [-1.0] * len(values[::10])
        out["user_lifetime_spend"] = InputColumn(values, spend.statuses)
    return out


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    started = time.perf_counter()
    program = compile_derivations(DERIVATIONS, INPUTS)
    compile_us = (time.perf_counter() - started) * 1e6
    print(f"{len(DERIVATIONS)} derivations over {len(INPUTS)} inputs, {rows} rows; "
          f"compile once: {compile_us:.0f} µs")
    for label, null_share, failing in (("every input PRESENT", 0.0, False),
                                       ("10% of each input NULL", 0.1, False),
                                       ("failing rows in every derivation", 0.1, True)):
        columns = batch(rows, null_share, failing)
        number = max(1, 20_000 // rows)
        best = min(timeit.repeat(lambda c=columns: program.evaluate(c), number=number,
                                 repeat=15)) / number
        print(f"  {label:34} {best * 1e6:8.1f} µs per batch, {best * 1e6 / rows:6.2f} µs "
              "per row")


if __name__ == "__main__":
    main()
