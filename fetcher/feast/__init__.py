"""Feast's side of the fetcher: a Feast repo (feature_store.yaml + registry.db) read into the
catalog types, Feast's entity keys and values, and (fetcher.feast.proto) Feast's protobuf
messages, written for the fetcher with Feast's package names and field numbers.

The rows are read by kvstores.feast_redis from the Redis Feast's own writers fill; the
engine serves them like any group's (plans from FeastCatalog.plans). docs/feast.md says
what is supported and what is refused.
"""

from fetcher.feast._config import SUPPORTED_KEY_VERSIONS, FeastConfig, read_feature_store_yaml
from fetcher.feast._errors import FeastError
from fetcher.feast._keys import feast_key_encoder
from fetcher.feast._registry import (
    FEAST_STORE,
    FeastCatalog,
    FeastProjection,
    FeastView,
    load_feast_repo,
)
from fetcher.feast._values import (
    FEATURE_TYPES,
    KEY_TYPES,
    NULL_TIMESTAMP,
    FeastRowCodec,
    value_type_name,
)

__all__ = [
    "FEAST_STORE",
    "FEATURE_TYPES",
    "KEY_TYPES",
    "NULL_TIMESTAMP",
    "SUPPORTED_KEY_VERSIONS",
    "FeastCatalog",
    "FeastConfig",
    "FeastError",
    "FeastProjection",
    "FeastRowCodec",
    "FeastView",
    "feast_key_encoder",
    "load_feast_repo",
    "read_feature_store_yaml",
    "value_type_name",
]
