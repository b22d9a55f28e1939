"""Key-value store backends behind one small async contract (see kvstores.base)."""

from kvstores.base import Found, KVStore, Lookup, Row, StoreError
from kvstores.cassandra import CassandraStore
from kvstores.dynamodb import DynamoDBStore
from kvstores.embedded import EmbeddedStore
from kvstores.factory import open_store
from kvstores.redis import RedisStore
from kvstores.redis_cluster import RedisClusterStore

__all__ = [
    "CassandraStore",
    "DynamoDBStore",
    "EmbeddedStore",
    "Found",
    "KVStore",
    "Lookup",
    "RedisClusterStore",
    "RedisStore",
    "Row",
    "StoreError",
    "open_store",
]
