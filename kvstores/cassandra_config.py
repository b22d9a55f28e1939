"""CassandraStore's CQL and options: the schema statements, consistency names, the store URL.

Kept apart from kvstores.cassandra so the store module holds only connection and
request logic; docs/storage-layout.md shows the same CQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from cassandra import ConsistencyLevel

from kvstores.url_options import parse_options, positive_float, positive_int

__all__ = [
    "LOG_TABLE",
    "TABLE",
    "consistency_level",
    "keyspace_cql",
    "log_table_cql",
    "parse_url",
    "table_cql",
    "valid_keyspace",
]

#: The one table holding every dataset.
TABLE = "versions"
#: The one table holding every aggregation log.
LOG_TABLE = "log"
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")
_REPLICATION_WORD = re.compile(r"[A-Za-z0-9_.\-]+")


def valid_keyspace(keyspace: str) -> str:
    """Return `keyspace` when it is a plain CQL identifier; ValueError otherwise."""
    if not isinstance(keyspace, str) or not _IDENTIFIER.fullmatch(keyspace):
        raise ValueError(
            f"keyspace {keyspace!r}: must be a letter then up to 47 letters, digits or '_'"
        )
    return keyspace


def consistency_level(name: str | int) -> int:
    """The driver's ConsistencyLevel value for a name like "LOCAL_QUORUM"; ValueError otherwise."""
    if isinstance(name, int) and name in ConsistencyLevel.value_to_name:
        return name
    value = ConsistencyLevel.name_to_value.get(str(name).upper())
    if value is None:
        names = ", ".join(sorted(ConsistencyLevel.name_to_value))
        raise ValueError(f"consistency {name!r}: unknown; accepted: {names}")
    return int(value)


def keyspace_cql(keyspace: str, replication: Mapping[str, str | int]) -> str:
    """CREATE KEYSPACE IF NOT EXISTS with `replication` ({"class": ..., option: value})."""
    if "class" not in replication:
        raise ValueError(f"replication {dict(replication)!r}: needs a 'class' (SimpleStrategy...)")
    parts = []
    for name, value in replication.items():
        if not all(_REPLICATION_WORD.fullmatch(str(word)) for word in (name, value)):
            raise ValueError(f"replication option {name!r}: {value!r}: letters, digits, '_.-' only")
        parts.append(f"'{name}': '{value}'")
    return (
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} "
        f"WITH replication = {{{', '.join(parts)}}} AND durable_writes = true"
    )


def table_cql(keyspace: str) -> str:
    """CREATE TABLE IF NOT EXISTS for the versions table (docs/storage-layout.md explains it)."""
    # Leveled compaction: reads are point lookups and versions of a key are
    # rewritten over time; LCS keeps a read to about one SSTable.
    return (
        f"CREATE TABLE IF NOT EXISTS {keyspace}.{TABLE} ("
        "dataset text, key blob, event_ms bigint, value blob, "
        "PRIMARY KEY ((dataset, key), event_ms)"
        ") WITH CLUSTERING ORDER BY (event_ms DESC)"
        " AND compaction = {'class': 'LeveledCompactionStrategy'}"
    )


def log_table_cql(keyspace: str) -> str:
    """CREATE TABLE IF NOT EXISTS for the log table (docs/storage-layout.md, "the log")."""
    return (
        f"CREATE TABLE IF NOT EXISTS {keyspace}.{LOG_TABLE} ("
        "dataset text, key blob, ts_ms bigint, id blob, payload blob, "
        "PRIMARY KEY ((dataset, key), ts_ms, id)"
        ") WITH CLUSTERING ORDER BY (ts_ms DESC, id DESC)"
    )


def _replication_option(text: str) -> dict[str, str | int]:
    # "3" -> SimpleStrategy, RF 3; "dc1:3,dc2:3" -> NetworkTopologyStrategy.
    if text.isdigit():
        return {"class": "SimpleStrategy", "replication_factor": int(text)}
    replication: dict[str, str | int] = {"class": "NetworkTopologyStrategy"}
    for part in text.split(","):
        dc, sep, factor = part.partition(":")
        if not sep or not dc or not factor.isdigit():
            raise ValueError(f"expected N or dc1:N,dc2:N, got {text!r}")
        replication[dc] = int(factor)
    return replication


def parse_url(url: str, *, timeout_s: float) -> dict[str, Any]:
    """Constructor keywords for `cassandra://host[,host...][:port]/keyspace?options`."""
    accepted: dict[str, tuple[str, Callable[[str], Any]]] = {
        "consistency": ("consistency", consistency_level),
        "write_consistency": ("write_consistency", consistency_level),
        "max_in_flight": ("max_in_flight", positive_int),
        "timeout_s": ("timeout_s", positive_float),
        "write_timeout_s": ("write_timeout_s", positive_float),
        "connect_timeout_s": ("connect_timeout_s", positive_float),
        "local_dc": ("local_dc", str),
        "protocol_version": ("protocol_version", positive_int),
        "replication": ("replication", _replication_option),
    }
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    keyspace = path.strip("/")
    hosts, port = netloc, 9042
    if ":" in netloc.rsplit("]", 1)[-1]:
        hosts, _, port_text = netloc.rpartition(":")
        if not port_text.isdigit():
            raise ValueError(f"store URL {url!r}: port {port_text!r} is not a number")
        port = int(port_text)
    points = [host.strip("[]") for host in hosts.split(",") if host]
    if not points or not keyspace:
        raise ValueError(
            f"store URL {url!r}: expected {scheme}://host[,host...][:port]/keyspace, "
            "e.g. cassandra://127.0.0.1:9042/features"
        )
    kwargs = parse_options(url, query, accepted)
    kwargs.setdefault("timeout_s", timeout_s)
    return {"contact_points": points, "port": port, "keyspace": keyspace, **kwargs}
