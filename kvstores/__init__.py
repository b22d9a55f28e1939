"""Key-value store backends behind one small async contract (see kvstores.base).

The backends are imported on first use (module __getattr__): a server that only
talks to Redis never loads cassandra-driver, aioboto3/botocore or lmdb, which
together cost tens of MB of RSS per worker and most of the import time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kvstores.base import (
    EMPTY_LOG,
    MAX_LOG_ID,
    Found,
    KnownPart,
    KVStore,
    LogEntry,
    LogLookup,
    LogRead,
    Lookup,
    Row,
    StoreError,
)
from kvstores.factory import open_store

if TYPE_CHECKING:
    from kvstores.cassandra import CassandraStore
    from kvstores.dynamodb import DynamoDBStore
    from kvstores.embedded import EmbeddedStore
    from kvstores.feast_redis import FeastRedisClusterStore, FeastRedisStore
    from kvstores.redis import RedisStore
    from kvstores.redis_cluster import RedisClusterStore

# Public name -> the module that defines it, imported when the name is first read.
_LAZY = {
    "CassandraStore": "kvstores.cassandra",
    "DynamoDBStore": "kvstores.dynamodb",
    "EmbeddedStore": "kvstores.embedded",
    "FeastRedisClusterStore": "kvstores.feast_redis",
    "FeastRedisStore": "kvstores.feast_redis",
    "RedisClusterStore": "kvstores.redis_cluster",
    "RedisStore": "kvstores.redis",
}

__all__ = [
    "EMPTY_LOG",
    "MAX_LOG_ID",
    "CassandraStore",
    "DynamoDBStore",
    "EmbeddedStore",
    "FeastRedisClusterStore",
    "FeastRedisStore",
    "Found",
    "KVStore",
    "KnownPart",
    "LogEntry",
    "LogLookup",
    "LogRead",
    "Lookup",
    "RedisClusterStore",
    "RedisStore",
    "Row",
    "StoreError",
    "open_store",
]


def __getattr__(name: str) -> Any:
    """Import a backend class on first access (`from kvstores import RedisStore`)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kvstores' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later reads skip this hook
    return value


def __dir__() -> list[str]:
    """Every public name, the lazy backends included."""
    return sorted(set(globals()) | set(__all__))
