"""Key-value store backends behind one small async contract (see kvstores.base)."""

from kvstores.base import Found, KVStore, Lookup, Row, StoreError
from kvstores.embedded import EmbeddedStore
from kvstores.factory import open_store
from kvstores.redis import RedisStore

__all__ = [
    "EmbeddedStore",
    "Found",
    "KVStore",
    "Lookup",
    "RedisStore",
    "Row",
    "StoreError",
    "open_store",
]
