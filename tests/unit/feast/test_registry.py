"""registry.db into the catalog: what is served, skipped and refused (registries built with
our own copy of Feast's messages; tests/integration/test_feast_redis.py reads real ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fetcher.feast import FeastError, load_feast_repo
from fetcher.feast.proto.core import registry_pb2 as r
from fetcher.feast.proto.core.entity_pb2 import Entity, EntitySpecV2
from fetcher.feast.proto.core.feature_pb2 import FeatureSpecV2
from fetcher.feast.proto.core.feature_service_pb2 import FeatureService, FeatureServiceSpec
from fetcher.feast.proto.core.feature_view_pb2 import FeatureView, FeatureViewSpec
from fetcher.feast.proto.core.feature_view_projection_pb2 import FeatureViewProjection
from fetcher.feast.proto.types.value_pb2 import ValueType as VT
from fetcher.types import FeatureType, KeyType

PROJECT = "shop"


def _entity(name: str, join_key: str, value_type: int, project: str = PROJECT) -> Entity:
    return Entity(
        spec=EntitySpecV2(name=name, join_key=join_key, value_type=value_type, project=project)
    )


def _view(name: str, entities: list[str], features: dict[str, int], **spec: Any) -> FeatureView:
    spec.setdefault("online", True)
    spec.setdefault("project", PROJECT)
    return FeatureView(
        spec=FeatureViewSpec(
            name=name,
            entities=entities,
            features=[FeatureSpecV2(name=f, value_type=t) for f, t in features.items()],
            **spec,
        )
    )


def _service(name: str, *projections: FeatureViewProjection) -> FeatureService:
    return FeatureService(
        spec=FeatureServiceSpec(name=name, project=PROJECT, features=list(projections))
    )


def _projection(view: str, features: list[str], **extra: Any) -> FeatureViewProjection:
    return FeatureViewProjection(
        feature_view_name=view,
        feature_columns=[FeatureSpecV2(name=f) for f in features],
        **extra,
    )


def _repo(tmp_path: Path, registry: r.Registry) -> Path:
    (tmp_path / "registry.db").write_bytes(registry.SerializeToString())
    path = tmp_path / "feature_store.yaml"
    path.write_text(f"project: {PROJECT}\nregistry: registry.db\nonline_store:\n  type: redis\n")
    return path


def _base() -> r.Registry:
    registry = r.Registry(
        entities=[
            _entity("user", "user_id", VT.INT64),
            _entity("merchant", "merchant", VT.STRING),
            _entity("__dummy", "__dummy_id", VT.INVALID),
        ],
        feature_views=[
            _view("users", ["user"], {"age": VT.INT32, "tags": VT.BYTES_LIST}, description="d"),
            _view("pairs", ["user", "merchant"], {"n": VT.INT64, "x": VT.FLOAT}),
            _view("offline", ["user"], {"y": VT.INT64}, online=False),
            _view("off", ["user"], {"y": VT.INT64}, disabled=True),
            _view("global", ["__dummy"], {"z": VT.INT64}),
            _view("elsewhere", ["user"], {"q": VT.INT64}, project="other"),
        ],
        on_demand_feature_views=[
            r.OnDemandFeatureView(spec=r.OnDemandFeatureViewSpec(name="odfv", project=PROJECT))
        ],
        stream_feature_views=[
            r.StreamFeatureView(spec=r.StreamFeatureViewSpec(name="sfv", project=PROJECT))
        ],
    )
    registry.feature_views[0].spec.ttl.seconds = 86_400
    return registry


def test_views_and_services(tmp_path: Path) -> None:
    registry = _base()
    registry.feature_services.append(
        _service(
            "mixed",
            _projection("users", ["age", "tags"]),
            _projection(
                "pairs", ["x"], feature_view_name_alias="p", join_key_map={"user_id": "buyer"}
            ),
        )
    )
    catalog = load_feast_repo(_repo(tmp_path, registry))
    assert set(catalog.groups) == {"users", "pairs", "mixed/p"}
    users = catalog.groups["users"]
    assert [(k.name, k.type) for k in users.keys] == [("user_id", KeyType.INT64)]
    assert [(f.name, f.type) for f in users.features] == [
        ("age", FeatureType.INT64), ("tags", FeatureType.BYTES_LIST),
    ]  # fmt: skip
    assert users.max_age_s == 86_400 and users.description == "d"
    assert users.dataset == '["users","age","tags"]'
    assert catalog.groups["pairs"].max_age_s is None  # ttl 0: never stale
    assert [k.name for k in catalog.groups["pairs"].keys] == ["user_id", "merchant"]
    assert catalog.groups["mixed/p"].dataset == '["pairs","x"]'
    (users_join, pairs_join) = catalog.services["mixed"].joins
    assert (users_join.group, users_join.prefix, users_join.key_mapping) == ("users", "users__", ())
    assert (pairs_join.group, pairs_join.prefix) == ("mixed/p", "p__")
    assert pairs_join.key_mapping == (("buyer", "user_id"),)
    assert catalog.projections["mixed"][1].features == ("x",)
    # Same join keys, same encoder (and so the same key bytes).
    assert catalog.key_encoders["pairs"] is catalog.key_encoders["mixed/p"]
    assert catalog.key_encoders["users"]([1]).endswith(PROJECT.encode())
    assert catalog.views["pairs"].join_keys == (("user_id", VT.INT64), ("merchant", VT.STRING))
    skipped = "\n".join(catalog.skipped)
    for name in ("'offline': not served (online is false)", "'off': not served (disabled)",
                 "'global': not served yet (it has no entities)", "on demand feature view 'odfv'",
                 "stream feature view 'sfv'"):  # fmt: skip
        assert name in skipped
    assert "elsewhere" not in skipped and "elsewhere" not in catalog.groups
    plans = catalog.plans(lambda fields: b"")
    keys = [k.name for k in plans.services["mixed"].request_keys]
    assert keys == ["user_id", "buyer", "merchant"]


def test_unsupported_things_are_refused_by_name(tmp_path: Path) -> None:
    registry = _base()
    registry.entities.append(_entity("place", "lat", VT.DOUBLE))
    registry.feature_views.extend([
        _view("maps", ["user"], {"ok": VT.INT64, "m": VT.MAP, "j": VT.JSON}),
        _view("by_place", ["place"], {"n": VT.INT64}),
        _view("orphan", ["nobody"], {"n": VT.INT64}),
        _view("short", ["user"], {"n": VT.INT64}),
    ])  # fmt: skip
    registry.feature_views[-1].spec.ttl.nanos = 500_000_000
    registry.feature_services.extend([
        _service("uses_odfv", _projection("odfv", ["a"])),
        _service("uses_offline", _projection("offline", ["y"])),
        _service("typo", _projection("users", ["agee"])),
        _service("bad_map", _projection("users", ["age"], join_key_map={"uid": "x"})),
        _service("versioned", _projection("users", ["age"], version_tag=2)),
        _service(
            "clash",
            _projection("users", ["age"]),
            _projection("pairs", ["n"], join_key_map={"merchant": "user_id"}),
        ),
    ])  # fmt: skip
    with pytest.raises(FeastError) as caught:
        load_feast_repo(_repo(tmp_path, registry))
    problems = "\n".join(caught.value.problems)
    for expected in (
        "feature view 'maps', feature 'm': value type MAP is not supported (supported: BYTES,",
        "feature view 'maps', feature 'j': value type JSON is not supported",
        "feature view 'by_place': join key 'lat' of entity 'place' has type DOUBLE",
        "feature view 'orphan': entity 'nobody' is not in the registry",
        "feature view 'short': ttl 0s 500000000ns: only a whole number of seconds",
        "feature service 'uses_odfv', feature view 'odfv': the view is not served (an on "
        "demand feature view)",
        "feature service 'uses_offline', feature view 'offline': the view is not served "
        "(online is false)",
        "feature service 'typo', feature view 'users': no feature(s) agee in the view",
        "join_key_map maps uid, which are not join keys of the view (user_id)",
        "feature service 'versioned', feature view 'users': versioned references are not "
        "supported yet",
        "feature service 'clash': request key 'user_id' is INT64 for view 'users' but STRING "
        "for view 'pairs'",
    ):
        assert expected in problems
    assert len(caught.value.problems) == 11


def test_a_registry_that_is_not_one(tmp_path: Path) -> None:
    path = _repo(tmp_path, r.Registry())
    (tmp_path / "registry.db").write_bytes(b"\xff\xff\xff")
    with pytest.raises(FeastError, match="not a Feast registry file"):
        load_feast_repo(path)
    (tmp_path / "registry.db").unlink()
    with pytest.raises(FeastError, match="cannot read it"):
        load_feast_repo(path)
