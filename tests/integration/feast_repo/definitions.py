"""The Feast repo of the Feast tests (tests/integration/test_feast_redis.py), applied with
`feast apply` in a temp dir next to its feature_store.yaml and Parquet files.

Two views with a feature of every value type Feast's Redis store writes and their lists:
`pushed` (rows written with write_to_online_store) keyed by user_id, `materialized` (rows
written by `feast materialize` from its Parquet source) keyed by driver_id and city. Feature
services over subsets, an alias and a join key map; an offline-only view and an on demand
view, which the fetcher does not serve.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Array, Bool, Bytes, Float32, Float64, Int32, Int64, String, UnixTimestamp

SCALARS = {
    "i32": Int32,
    "i64": Int64,
    "f32": Float32,
    "f64": Float64,
    "str": String,
    "byt": Bytes,
    "flag": Bool,
    "ts": UnixTimestamp,
}
SCHEMA = [Field(name=name, dtype=dtype) for name, dtype in SCALARS.items()] + [
    Field(name=f"{name}_list", dtype=Array(dtype)) for name, dtype in SCALARS.items()
]
TTL = timedelta(hours=1)

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
city = Entity(name="city", join_keys=["city"], value_type=ValueType.STRING)

pushed = FeatureView(
    name="pushed",
    entities=[user],
    ttl=TTL,
    schema=SCHEMA,
    source=FileSource(
        name="pushed_source", path="pushed.parquet", timestamp_field="event_timestamp"
    ),
    online=True,
)
materialized = FeatureView(
    name="materialized",
    entities=[driver, city],
    ttl=TTL,
    schema=SCHEMA,
    source=FileSource(
        name="materialized_source", path="materialized.parquet", timestamp_field="event_timestamp"
    ),
    online=True,
)
offline_only = FeatureView(
    name="offline_only",
    entities=[user],
    ttl=TTL,
    schema=[Field(name="score", dtype=Float64)],
    source=FileSource(
        name="offline_source", path="pushed.parquet", timestamp_field="event_timestamp"
    ),
    online=False,
)

bump = RequestSource(name="bump_request", schema=[Field(name="bump", dtype=Int64)])


@on_demand_feature_view(sources=[bump], schema=[Field(name="bumped", dtype=Int64)], mode="python")
def bumped(inputs: dict) -> dict:
    return {"bumped": [value + 1 for value in inputs["bump"]]}


whole = FeatureService(name="whole", features=[pushed, materialized])
subset = FeatureService(
    name="subset",
    features=[pushed[["i64", "str_list", "f32"]], materialized[["byt_list", "i32"]]],
)
aliased = FeatureService(
    name="aliased",
    features=[
        pushed.with_name("alias").with_join_key_map({"user_id": "customer_id"})[["f64", "ts"]]
    ],
)
