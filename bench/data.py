"""The bench data set: users, features, values, request sequences and the files for loaders.

Standard library only: the Feast side (bench/feast_repo.py, run by Feast's own venv)
imports it too, so both systems write, and are checked against, the same numbers.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Feature groups (fetcher) / feature views (Feast), each with 20 float64 features.
GROUPS: tuple[str, ...] = ("user_a", "user_b")
FEATURES_PER_GROUP = 20
#: The feature service (fetcher) / FeatureService (Feast) over both groups.
SERVICE = "user_ab"
KEY = "user_id"
#: Users get ids FIRST_USER .. FIRST_USER + users - 1 (nonzero: a 0 id hides encoding bugs).
FIRST_USER = 1_000


def feature_names(group: str) -> list[str]:
    """`user_a` -> a00 .. a19: names are unique across groups, so no prefixes are needed."""
    letter = group.removeprefix("user_")
    return [f"{letter}{i:02d}" for i in range(FEATURES_PER_GROUP)]


def all_feature_names() -> list[str]:
    """The service's 40 features in join order."""
    return [name for group in GROUPS for name in feature_names(group)]


def value(user: int, group_index: int, feature_index: int) -> float:
    """The stored value: exact in binary (a dyadic fraction), so equality checks are exact."""
    return float(user) + (group_index * FEATURES_PER_GROUP + feature_index) / 64.0


def expected_vector(user: int) -> list[float]:
    """The 40 values a correct server returns for `user`, in service order."""
    return [value(user, g, f) for g in range(len(GROUPS)) for f in range(FEATURES_PER_GROUP)]


@dataclass(frozen=True, slots=True)
class DataSet:
    """How many users exist and the event time every row carries."""

    users: int
    event_ms: int

    @property
    def user_ids(self) -> range:
        """Every user id that has rows."""
        return range(FIRST_USER, FIRST_USER + self.users)


def request_users(data: DataSet, requests: int, entities: int, seed: int) -> list[list[int]]:
    """`requests` lists of `entities` distinct users each, drawn evenly over all users."""
    rng = random.Random(seed)
    ids = list(data.user_ids)
    out: list[list[int]] = []
    pool: list[int] = []
    for _ in range(requests):
        if len(pool) < entities:
            rng.shuffle(ids)
            pool = list(ids)
        out.append([pool.pop() for _ in range(entities)])
    return out


def write_group_csv(path: Path, data: DataSet, group: str) -> Path:
    """One CSV for `fetcher load --group group`: user_id, event_time, the 20 features."""
    index = GROUPS.index(group)
    names = feature_names(group)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([KEY, "event_time", *names])
        for user in data.user_ids:
            # repr() of a float round-trips exactly through the loader's float().
            row = [repr(value(user, index, f)) for f in range(FEATURES_PER_GROUP)]
            writer.writerow([user, data.event_ms, *row])
    return path


def fetcher_request_json(users: Sequence[int]) -> dict[str, object]:
    """fetcher.v1 GetFeatures (one user) or GetBatchFeatures request in protobuf JSON."""
    if len(users) == 1:
        return {"feature_service": SERVICE, "keys": {KEY: {"int64_value": str(users[0])}}}
    return {
        "feature_service": SERVICE,
        "entities": [{"keys": {KEY: {"int64_value": str(u)}}} for u in users],
    }


def feast_request_json(users: Sequence[int]) -> dict[str, object]:
    """Feast's GetOnlineFeaturesRequest in protobuf JSON (gRPC, `feast listen`)."""
    return {
        "feature_service": SERVICE,
        "entities": {KEY: {"val": [{"int64_val": str(u)} for u in users]}},
    }


def feast_http_body(users: Sequence[int]) -> dict[str, object]:
    """The body of POST /get-online-features (HTTP, `feast serve`)."""
    return {"feature_service": SERVICE, "entities": {KEY: list(users)}}


def write_json(path: Path, payload: object) -> Path:
    """Write compact JSON (ghz -D data files, wrk bodies)."""
    path.write_text(json.dumps(payload, separators=(",", ":")))
    return path
