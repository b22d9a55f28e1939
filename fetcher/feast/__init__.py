"""Feast's side of the fetcher: a Feast repo (feature_store.yaml + registry.db) read into the
catalog types, Feast's entity keys and values, and (fetcher.feast.proto) Feast's protobuf
messages, written for the fetcher with Feast's package names and field numbers.

The rows are read by kvstores.feast_redis from the Redis Feast's own writers fill; the
engine serves them like any group's (plans from FeastCatalog.plans). docs/feast.md says
what is supported and what is refused.
"""

from typing import TYPE_CHECKING

from fetcher.feast._answer import FIELD_STATUS, FeastAnswer
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
from fetcher.feast._serving import (
    FeastReader,
    FeastRequestError,
    FeastSnapshot,
    Resolved,
)
from fetcher.feast._values import (
    FEATURE_TYPES,
    KEY_TYPES,
    NULL_TIMESTAMP,
    FeastRowCodec,
    value_type_name,
)
from fetcher.lazy import lazy_getattr

if TYPE_CHECKING:
    from fetcher.feast._grpc import FeastServicer, add_feast_services
    from fetcher.feast._http import FeastHttp, request_from_json

# Imported on first use: grpc must not be loaded before a supervisor forks its workers,
# and aiohttp only when the HTTP API is on.
_LAZY = {
    "FeastServicer": "fetcher.feast._grpc",
    "add_feast_services": "fetcher.feast._grpc",
    "FeastHttp": "fetcher.feast._http",
    "request_from_json": "fetcher.feast._http",
}
__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = [
    "FEAST_STORE",
    "FEATURE_TYPES",
    "FIELD_STATUS",
    "KEY_TYPES",
    "NULL_TIMESTAMP",
    "SUPPORTED_KEY_VERSIONS",
    "FeastAnswer",
    "FeastCatalog",
    "FeastConfig",
    "FeastError",
    "FeastHttp",
    "FeastProjection",
    "FeastReader",
    "FeastRequestError",
    "FeastRowCodec",
    "FeastServicer",
    "FeastSnapshot",
    "FeastView",
    "Resolved",
    "add_feast_services",
    "feast_key_encoder",
    "load_feast_repo",
    "read_feature_store_yaml",
    "request_from_json",
    "value_type_name",
]
