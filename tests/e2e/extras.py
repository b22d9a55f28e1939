"""Rows of our own, loaded as JSON Lines next to the demo files, at times the tests know.

User 20001 has three versions (5 h, about 1 h and 10 min before `now`) for point-in-time
reads; user 20002 has one version 8 days old (user_profile's max age is 7 days). Values
are edge cases: doubles that only round-trip when every digit is kept, int64 limits,
nulls in every nullable field, empty lists and non-ASCII strings.
"""

from __future__ import annotations

from typing import Any

from fetcher.demo._data import DemoRow

USER_VERSIONS = 20001
USER_STALE = 20002
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
EXTRA_FILES = {"user_profile": "extra_users.jsonl"}


def version_times(now_ms: int) -> tuple[int, int, int]:
    """Event times of user 20001's three versions, oldest first."""
    return now_ms - 5 * HOUR_MS, now_ms - HOUR_MS - 7, now_ms - 10 * 60_000


def _user(n: int, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "age": 20 + n,
        "country": "NZ",
        "account_age_days": 1000 * n,
        "is_verified": n % 2 == 0,
        "lifetime_spend": (0.1 + 0.2) * n,  # 0.30000000000000004 for n = 1
        "avg_order_value": 1 / 3 + n,
        "orders_7d": 2**63 - 1,
        "orders_30d": -(2**63),
        "last_login_ts": 1_700_000_000_123 + n,
        "preferred_language": "zh-Hant-TW",
        "device_type": "ios",
        "sessions_7d": n,
        "avg_session_minutes": 5e-324 * n,  # subnormal doubles
        "churn_score": 0.987654321012345 / n,
        "credit_score": 700 + n,
        "email_domain": "例え.jp",
        "is_premium": n % 2 == 1,
        "category_affinity": [1.7976931348623157e308, -0.0 + n, 2.2250738585072014e-308],
        "recent_categories": ["bücher", "home"][: n - 1],
        "loyalty_tier": "silver",
        "push_opt_in": True,
        "referral_count": n * 11,
    }
    record.update(overrides)
    return record


def extra_rows(now_ms: int) -> dict[str, list[DemoRow]]:
    """The extra rows per group, in file order."""
    t1, t2, t3 = version_times(now_ms)
    return {
        "user_profile": [
            DemoRow((USER_VERSIONS,), t1, _user(1, last_login_ts=None)),
            DemoRow((USER_VERSIONS,), t3, _user(3, loyalty_tier=None, credit_score=None)),
            DemoRow((USER_VERSIONS,), t2, _user(2, churn_score=None)),
            DemoRow((USER_STALE,), now_ms - 8 * DAY_MS, _user(4)),
        ]
    }
