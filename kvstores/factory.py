"""open_store: build a KVStore from a URL given in settings or on the command line.

- ``embedded://<path>``: EmbeddedStore at <path> (relative to the working directory
  unless it starts with ``/``): ``embedded://data/demo.lmdb``, ``embedded:///var/lib/x.lmdb``.
- ``redis://host:port/db`` and ``rediss://...`` (TLS): RedisStore.

Backend options go in the query string, e.g. ``?max_connections=64&max_versions=8``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from kvstores.base import KVStore
from kvstores.embedded import EmbeddedStore
from kvstores.redis import RedisStore

__all__ = ["open_store"]

_SCHEMES = ("embedded", "redis", "rediss")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"expected an integer >= 1, got {text!r}")
    return value


def _versions(text: str) -> int | None:
    # "0" or "none" lifts the bound: every version is kept.
    if text.lower() in ("0", "none"):
        return None
    return _positive_int(text)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"expected a number > 0, got {text!r}")
    return value


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


# option name -> (constructor keyword, parser); the keyword differs when the URL
# unit is friendlier than the constructor's (map_size_mb vs bytes).
_Option = tuple[str, Callable[[str], Any]]
_EMBEDDED_OPTIONS: dict[str, _Option] = {
    "map_size_mb": ("map_size", lambda text: _positive_int(text) << 20),
    "max_versions": ("max_versions", _versions),
    "max_readers": ("max_readers", _positive_int),
    "readonly": ("readonly", _flag),
    "sync": ("sync", _flag),
}
_REDIS_OPTIONS: dict[str, _Option] = {
    "max_connections": ("max_connections", _positive_int),
    "max_versions": ("max_versions", _versions),
    "key_prefix": ("key_prefix", str),
    "timeout_s": ("timeout_s", _positive_float),
    "write_timeout_s": ("write_timeout_s", _positive_float),
}


def _options(url: str, query: str, accepted: dict[str, _Option]) -> dict[str, Any]:
    """Parse the query string into constructor keywords; ValueError names the bad option."""
    names = ", ".join(sorted(accepted))
    kwargs: dict[str, Any] = {}
    for name, text in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if name not in accepted:
            raise ValueError(f"store URL {url!r}: unknown option {name!r}; accepted: {names}")
        keyword, parse = accepted[name]
        if keyword in kwargs:
            raise ValueError(f"store URL {url!r}: option {name!r} given twice")
        try:
            kwargs[keyword] = parse(text)
        except ValueError as exc:
            raise ValueError(f"store URL {url!r}: option {name!r}: {exc}") from None
    return kwargs


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
        return EmbeddedStore(path, **_options(url, query, _EMBEDDED_OPTIONS))
    parts = urlsplit(url)
    kwargs = _options(url, parts.query, _REDIS_OPTIONS)
    kwargs.setdefault("timeout_s", timeout_s)
    # The store gets the URL without our options; redis-py would reject them.
    bare = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return RedisStore(bare, **kwargs)
