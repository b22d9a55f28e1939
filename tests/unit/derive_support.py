"""The demo catalog with derived features on user_merchant (two request-time values, one
derivation of each served type), and the plain-Python values they must have."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from fetcher.api._snapshot import Snapshot, build_snapshot
from fetcher.types import ContextValue, Derivation, FeatureType, Status
from tests.unit.fetch_support import demo_catalog

T = FeatureType
CONTEXT = (ContextValue("amount", T.DOUBLE), ContextValue("channel", T.STRING))
DERIVATIONS = (
    Derivation("amount_over_avg", "amount / user_avg_order_value", T.DOUBLE),
    Derivation("is_big", "amount > 3 * coalesce(user_avg_order_value, 50.0)", T.BOOL),
    Derivation("age_band", "if(user_age < 25, 0, if(user_age < 65, 1, 2))", T.INT64),
    Derivation("orders_gap", "merchant_orders_7d - user_orders_30d * 1000", T.INT64),
    Derivation("per_amount", "100.0 / amount", T.DOUBLE),
    Derivation("is_web", "channel = 'web'", T.BOOL),
    Derivation("tier", "coalesce(user_loyalty_tier, channel)", T.STRING),
    Derivation("logo", "merchant_logo_hash", T.BYTES),
    Derivation("affinity", "user_category_affinity", T.DOUBLE_LIST),
    Derivation("hours", "merchant_hourly_orders_24h", T.INT64_LIST),
    Derivation("tags", "if(is_web, merchant_tags, merchant_top_categories)", T.STRING_LIST),
    Derivation("verified_big", "is_big and user_is_verified", T.BOOL),
)
NAMES = tuple(d.name for d in DERIVATIONS)
PRESENT, NULL, ERROR = Status.PRESENT, Status.NULL_VALUE, Status.ERROR


def derived_snapshot(**changes: Any) -> Snapshot:
    """The demo snapshot with user_merchant's context and derivations (or `changes`)."""
    catalog = demo_catalog()
    fields = {"context": CONTEXT, "derivations": DERIVATIONS, **changes}
    service = dataclasses.replace(catalog.services["user_merchant"], **fields)
    return build_snapshot(dataclasses.replace(
        catalog, services={**catalog.services, "user_merchant": service}))


def expected(user: Mapping[str, Any] | None, merchant: Mapping[str, Any] | None,
             amount: float, channel: str) -> dict[str, tuple[Status, Any]]:
    """Each derivation's (status, value) in plain Python, from the served inputs (None: the
    group had no row, or it was stale: its features are null to a derivation)."""
    u = user or {}
    m = merchant or {}

    def value(status: Status, v: Any) -> tuple[Status, Any]:
        return (status, v if status is PRESENT else None)

    out: dict[str, tuple[Status, Any]] = {}
    avg = u.get("avg_order_value")
    out["amount_over_avg"] = ((ERROR, None) if avg == 0 else
                              value(PRESENT, amount / avg) if avg is not None else (NULL, None))
    is_big = amount > 3 * (avg if avg is not None else 50.0)
    out["is_big"] = (PRESENT, is_big)
    age = u.get("age")
    out["age_band"] = (NULL, None) if age is None else (
        PRESENT, 0 if age < 25 else 1 if age < 65 else 2)
    gap_in = (m.get("orders_7d"), u.get("orders_30d"))
    out["orders_gap"] = (NULL, None) if None in gap_in else (
        PRESENT, gap_in[0] - gap_in[1] * 1000)
    out["per_amount"] = (ERROR, None) if amount == 0 else (PRESENT, 100.0 / amount)
    out["is_web"] = (PRESENT, channel == "web")
    tier = u.get("loyalty_tier")
    out["tier"] = (PRESENT, tier if tier is not None else channel)
    for name, source, group in (("logo", "logo_hash", m), ("affinity", "category_affinity", u),
                                ("hours", "hourly_orders_24h", m)):
        got = group.get(source)
        out[name] = (NULL, None) if got is None else (PRESENT, got)
    tags = m.get("tags") if channel == "web" else m.get("top_categories")
    out["tags"] = (NULL, None) if tags is None else (PRESENT, tags)
    verified = u.get("is_verified")
    out["verified_big"] = ((PRESENT, False) if not is_big else
                           (NULL, None) if verified is None else (PRESENT, verified))
    for name, (status, v) in out.items():
        if status is PRESENT and isinstance(v, float) and not math.isfinite(v):
            out[name] = (ERROR, None)
    return out
