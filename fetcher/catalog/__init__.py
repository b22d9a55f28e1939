"""The catalog: compiled serving configs (feature groups, services, key mapping, TTLs) read
and validated at load into one immutable `Catalog`.

Imports the codec and the domain types; does no I/O on the request path and knows no protobuf.
"""

from fetcher.catalog._loader import Catalog, CatalogError, catalog_version, load_catalog
from fetcher.catalog._validate import NAME_RE, join_request_keys

__all__ = [
    "NAME_RE",
    "Catalog",
    "CatalogError",
    "catalog_version",
    "join_request_keys",
    "load_catalog",
]
