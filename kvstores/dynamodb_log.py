"""The aggregation log on DynamoDB: items of `<prefix>log`, the Query of one key, its chunks.

Partition key `pk` (B, as for versions), sort key `sk` (B) = ts_ms (8 bytes big-endian)
+ id, so a key's entries sort by (ts_ms, id), bytes unsigned, a batch part (empty id)
first; `p` (B) the payload, `expires_at` (N, epoch seconds) when the entry has a TTL.
A read is one Query newest first (ScanIndexForward false), paged until its scan is
complete; a key's entries are written by TransactWriteItems, one per 100 entries.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from kvstores.base import MAX_LOG_ID, KnownPart, LogEntry, StoreError

__all__ = ["MAX_ITEMS", "chunks", "is_conflict", "log_item", "log_query", "read_item"]

#: TransactWriteItems' limit on the items of one transaction.
MAX_ITEMS = 100
# ... and on their total size; the store stays below it with room for the request's framing.
_MAX_BYTES = 4 * 1024 * 1024 - 64 * 1024
_MAX_ITEM = 400 * 1024
_ITEM_OVERHEAD = 64  # attribute names and the number of an item, rounded up
_TS = struct.Struct(">Q")
# Above every sort key of one time: the time, then more than the longest id of 0xff bytes.
_AFTER_IDS = b"\xff" * (MAX_LOG_ID + 1)
_LIVE = "attribute_not_exists(expires_at) OR expires_at > :now"
# Reasons a transaction is cancelled that a retry may get past.
_TRANSIENT = {"TransactionConflict", "ThrottlingError", "None"}


def log_item(pk: bytes, entry: LogEntry, now_s: float) -> dict[str, Any]:
    """The item of one entry (checked with check_entry); ValueError when it is too large."""
    size = len(pk) + _TS.size + len(entry.id) + len(entry.payload) + _ITEM_OVERHEAD
    if size > _MAX_ITEM:
        room = _MAX_ITEM - size + len(entry.payload)
        raise ValueError(
            f"payload of {len(entry.payload)} bytes in a log entry of dataset {entry.dataset!r}:"
            f" a DynamoDB item holds {_MAX_ITEM} bytes: at most {room} here"
        )
    item: dict[str, Any] = {
        "pk": {"B": pk},
        "sk": {"B": _TS.pack(entry.ts_ms) + entry.id},
        "p": {"B": entry.payload},
    }
    if entry.ttl_s is not None:
        # Rounded up: an entry never expires before its TTL has passed.
        item["expires_at"] = {"N": str(math.ceil(now_s + entry.ttl_s))}
    return item


def _size(item: dict[str, Any]) -> int:
    return len(item["pk"]["B"]) + len(item["sk"]["B"]) + len(item["p"]["B"]) + _ITEM_OVERHEAD


def chunks(items: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The items of one key in transactions: at most 100 items and 4 MB each."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for item in items:
        item_size = _size(item)
        if chunk and (len(chunk) == MAX_ITEMS or size + item_size > _MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item_size
    if chunk:
        yield chunk


def log_query(
    table: str,
    pk: bytes,
    bounds: tuple[int, int],
    now_s: int,
    consistent: bool,
    known: KnownPart | None = None,
) -> dict[str, Any]:
    """The Query of one lookup's range, newest first, expired entries filtered out.

    With a `known` part, from just after it: its sort key is its time alone, so the
    range starts at time + 00, the first sort key above it.
    """
    low = _TS.pack(bounds[0]) if known is None else _TS.pack(known[0]) + b"\x00"
    return {
        "TableName": table,
        "KeyConditionExpression": "pk = :k AND sk BETWEEN :lo AND :hi",
        # Limit (set per page) counts items before this filter.
        "FilterExpression": _LIVE,
        "ExpressionAttributeValues": {
            ":k": {"B": pk},
            ":lo": {"B": low},
            ":hi": {"B": _TS.pack(bounds[1]) + _AFTER_IDS},
            ":now": {"N": str(now_s)},
        },
        "ScanIndexForward": False,
        "ConsistentRead": consistent,
    }


def read_item(item: dict[str, Any], table: str) -> tuple[int, bytes, bytes]:
    """(ts_ms, id, payload) of a log item; StoreError when it is not the documented layout."""
    try:
        sort_key = bytes(item["sk"]["B"])
        if len(sort_key) < _TS.size:
            raise ValueError("sk is shorter than its 8-byte time")
        payload = bytes(item["p"]["B"]) if "p" in item else b""
        return _TS.unpack_from(sort_key)[0], sort_key[_TS.size :], payload
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(
            f"dynamodb: malformed item in {table!r} (pk {item.get('pk')!r}): needs sk (B, "
            f"8-byte time + id) and p (B); see docs/storage-layout.md ({exc})"
        ) from exc


def is_conflict(exc: BaseException) -> bool:
    """Whether a TransactWriteItems failure is a cancellation a retry may get past."""
    if not isinstance(exc, ClientError):
        return False
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = {str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons", ())}
    return bool(reasons) and reasons <= _TRANSIENT and reasons != {"None"}
