"""open_store: build a KVStore from a URL given in settings or on the command line.

- ``embedded://<path>``: EmbeddedStore at <path> (relative to the working directory
  unless it starts with ``/``): ``embedded://data/demo.lmdb``, ``embedded:///var/lib/x.lmdb``.
- ``redis://host:port/db`` and ``rediss://...`` (TLS): RedisStore.
- ``redis+cluster://[user:password@]host:port[,host:port...]`` and
  ``rediss+cluster://...`` (TLS): RedisClusterStore. The nodes listed are where
  the slot map is first read from (one is enough, more survive one being down);
  the other nodes are discovered. An optional path may only be ``/0``.
- ``dynamodb://<region>/<table prefix>``: DynamoDBStore on tables ``<prefix>versions``,
  ``<prefix>latest`` and ``<prefix>log`` (prefix ``fetcher_`` when left out); a local
  server is named by ``?endpoint_url=http://127.0.0.1:8100``.
- ``cassandra://host[,host...][:port]/keyspace``: CassandraStore (docs/storage-layout.md).
- ``feast+redis://host:port/db``, ``feast+rediss://...`` and ``feast+redis+cluster://...``,
  ``feast+rediss+cluster://...``: the rows Feast's Redis online store wrote, read-only
  (FeastRedisStore, FeastRedisClusterStore; docs/feast.md); options ``timeout_s`` and
  ``max_connections`` only.

Backend options go in the query string, e.g. ``?max_connections=64&max_versions=8``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

from kvstores.base import KVStore
from kvstores.url_options import Option, flag, parse_options, positive_float, positive_int

# Each backend (and its driver) is imported by the branch that opens it: a server
# that only uses Redis never pays cassandra-driver's, botocore's or lmdb's memory.
if TYPE_CHECKING:
    from kvstores.dynamodb import DynamoDBStore
    from kvstores.feast_redis import FeastRedisClusterStore
    from kvstores.redis_cluster import RedisClusterStore

__all__ = ["open_store"]

_SCHEMES = (
    "embedded",
    "redis",
    "rediss",
    "redis+cluster",
    "rediss+cluster",
    "dynamodb",
    "cassandra",
    "feast+redis",
    "feast+rediss",
    "feast+redis+cluster",
    "feast+rediss+cluster",
)


def _versions(text: str) -> int | None:
    # "0" or "none" lifts the bound: every version is kept.
    if text.lower() in ("0", "none"):
        return None
    return positive_int(text)


_EMBEDDED_OPTIONS: dict[str, Option] = {
    "map_size_mb": ("map_size", lambda text: positive_int(text) << 20),
    "max_versions": ("max_versions", _versions),
    "max_readers": ("max_readers", positive_int),
    "readonly": ("readonly", flag),
    "sync": ("sync", flag),
}
_REDIS_OPTIONS: dict[str, Option] = {
    "max_connections": ("max_connections", positive_int),
    "max_versions": ("max_versions", _versions),
    "key_prefix": ("key_prefix", str),
    "latest_keys": ("latest_keys", flag),
    "latest_fallback": ("latest_fallback", flag),
    "timeout_s": ("timeout_s", positive_float),
    "write_timeout_s": ("write_timeout_s", positive_float),
}
# Feast's stores only read: no versions, prefixes or write timeouts.
_FEAST_OPTIONS: dict[str, Option] = {
    "max_connections": ("max_connections", positive_int),
    "timeout_s": ("timeout_s", positive_float),
}

_DYNAMODB_OPTIONS: dict[str, Option] = {
    "endpoint_url": ("endpoint_url", str),
    "timeout_s": ("timeout_s", positive_float),
    "write_timeout_s": ("write_timeout_s", positive_float),
    "connect_timeout_s": ("connect_timeout_s", positive_float),
    "max_pool_connections": ("max_pool_connections", positive_int),
    "max_attempts": ("max_attempts", positive_int),
    "consistent_read": ("consistent_read", flag),
}


def _cluster_nodes(url: str, netloc: str) -> list[tuple[str, int]]:
    """host:port[,host:port...] (IPv6 in brackets, port 6379 when left out)."""
    nodes: list[tuple[str, int]] = []
    for item in netloc.split(","):
        if item.startswith("["):
            host, _, port = item[1:].partition("]")
            port = port.removeprefix(":")
        else:
            host, _, port = item.partition(":")
        if not host or (port and not port.isdigit()) or not 0 < int(port or 6379) < 65536:
            raise ValueError(
                f"store URL {url!r}: bad node {item!r}; "
                "e.g. redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
            )
        nodes.append((host, int(port or 6379)))
    return nodes


def _open_cluster(
    url: str, scheme: str, rest: str, timeout_s: float
) -> RedisClusterStore | FeastRedisClusterStore:
    # urlsplit cannot read a comma-separated host list (its .port fails), so the
    # parts are taken apart by hand: [user:password@]nodes[/0][?options].
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    if slash and path not in ("", "0"):
        raise ValueError(f"store URL {url!r}: a Redis Cluster has only database 0, not {path!r}")
    userinfo, at, nodes = netloc.rpartition("@")
    if not nodes:
        raise ValueError(f"store URL {url!r}: no nodes; e.g. redis+cluster://127.0.0.1:7001")
    username, _, password = userinfo.partition(":")
    feast = scheme.startswith("feast+")
    kwargs = parse_options(url, query, _FEAST_OPTIONS if feast else _REDIS_OPTIONS)
    kwargs.setdefault("timeout_s", timeout_s)
    cls: type[RedisClusterStore] | type[FeastRedisClusterStore]
    if feast:
        from kvstores.feast_redis import FeastRedisClusterStore as cls
    else:
        from kvstores.redis_cluster import RedisClusterStore as cls
    return cls(
        _cluster_nodes(url, nodes),
        username=(unquote(username) or None) if at else None,
        password=(unquote(password) or None) if at else None,
        ssl=scheme.endswith("rediss+cluster"),
        **kwargs,
    )


def _open_dynamodb(url: str, timeout_s: float) -> DynamoDBStore:
    """dynamodb://<region>/<table prefix>?options; the prefix defaults to fetcher_."""
    parts = urlsplit(url)
    if not parts.netloc:
        raise ValueError(f"store URL {url!r}: no region; e.g. dynamodb://us-east-1/fetcher_")
    kwargs = parse_options(url, parts.query, _DYNAMODB_OPTIONS)
    kwargs.setdefault("timeout_s", timeout_s)
    prefix = parts.path.removeprefix("/") or "fetcher_"
    from kvstores.dynamodb import DynamoDBStore

    try:
        return DynamoDBStore(prefix, region=parts.netloc, **kwargs)
    except ValueError as exc:
        raise ValueError(f"store URL {url!r}: {exc}") from None


def open_store(url: str, *, timeout_s: float = 0.1) -> KVStore:
    """Build the store a URL names; `timeout_s` bounds each request-path call (Redis).

    Raises ValueError for an unknown scheme or option, StoreError when an embedded
    store cannot be opened. Redis stores connect lazily: use ping() to check.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ValueError(
            f"store URL {url!r}: unknown scheme {scheme if sep else '(none)'!r}; "
            f"accepted: {', '.join(s + '://' for s in _SCHEMES)}"
        )
    scheme = scheme.lower()
    if scheme == "embedded":
        # Everything up to '?' is the path, taken literally: urlsplit would read
        # "data" in embedded://data/demo.lmdb as a host name.
        path, _, query = rest.partition("?")
        if not path:
            raise ValueError(f"store URL {url!r}: no path; e.g. embedded://data/demo.lmdb")
        options = parse_options(url, query, _EMBEDDED_OPTIONS)
        from kvstores.embedded import EmbeddedStore

        return EmbeddedStore(path, **options)
    if scheme == "cassandra":
        from kvstores.cassandra import CassandraStore

        return CassandraStore.from_url(url, timeout_s=timeout_s)
    if scheme == "dynamodb":
        return _open_dynamodb(url, timeout_s)
    if scheme.endswith("+cluster"):
        return _open_cluster(url, scheme, rest, timeout_s)
    parts = urlsplit(url)
    feast = scheme.startswith("feast+")
    kwargs = parse_options(url, parts.query, _FEAST_OPTIONS if feast else _REDIS_OPTIONS)
    kwargs.setdefault("timeout_s", timeout_s)
    # The store gets the URL without our options (redis-py would reject them) and without
    # "feast+".
    bare = urlunsplit((scheme.removeprefix("feast+"), parts.netloc, parts.path, "", ""))
    if feast:
        from kvstores.feast_redis import FeastRedisStore

        return FeastRedisStore(bare, **kwargs)
    from kvstores.redis import RedisStore

    return RedisStore(bare, **kwargs)
