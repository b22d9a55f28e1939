"""Key-value store backends behind one small async contract (see kvstores.base)."""

from kvstores.base import Found, KVStore, Lookup, Row, StoreError

__all__ = ["Found", "KVStore", "Lookup", "Row", "StoreError"]
