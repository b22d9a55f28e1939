"""DynamoDBStore: every version in one table, the latest version per entity in another.

Layout (docs/storage-layout.md, "DynamoDB", has the details):

- ``<prefix>versions``: partition key ``pk`` (B) = len(dataset) (1 byte) + dataset UTF-8
  + entity key bytes; sort key ``event_ms`` (N); value ``v`` (B); ``expires_at`` (N,
  epoch seconds, DynamoDB TTL) when the row has a TTL.
- ``<prefix>latest``: partition key ``pk`` only, same attributes: the newest version of
  the entity, written with a conditional put so an older event never replaces it.

Latest lookups are BatchGetItem on the latest table (100 keys a request, requests in
parallel, UnprocessedKeys retried with backoff until the deadline); "at or before T"
lookups are one Query each (pk = :k AND event_ms <= :t, newest first, Limit 1), in
parallel. DynamoDB deletes expired items lazily, so reads skip what has expired.

Aggregation logs live in a third table, ``<prefix>log`` (kvstores.dynamodb_log).
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import aioboto3
import aiohttp
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from kvstores.base import (
    EMPTY_LOG,
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
from kvstores.dynamodb_log import chunks, is_conflict, log_item, log_query, read_item
from kvstores.logs import LogScan, by_key, check_entry, known_in, log_bounds

__all__ = ["DynamoDBStore"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_GET_CHUNK = 100  # BatchGetItem's limit per request
_WRITE_CHUNK = 25  # BatchWriteItem's limit per request
_MAX_PK = 2048  # DynamoDB's limit on a partition key value
_MAX_ITEM = 400 * 1024
_ITEM_OVERHEAD = 64  # attribute names and the two numbers of an item, rounded up
# Items per Query page of a log read (at most: a scan asks for no more than it may take).
_LOG_PAGE = 500
_BACKOFF_BASE_S = 0.01
_BACKOFF_CAP_S = 0.5
#: Static credentials sent to a local server (moto, DynamoDB Local), which accept any.
LOCAL_CREDENTIALS = "fetcher-local"
_TABLE_PREFIX = re.compile(r"[A-Za-z0-9_.-]{0,240}")
# An expired latest item counts as absent: a later write of an older event replaces it.
_NEWER_OR_SAME = "attribute_not_exists(pk) OR event_ms <= :e OR expires_at <= :now"
_LIVE = "attribute_not_exists(expires_at) OR expires_at > :now"
_BACKEND_ERRORS = (ClientError, BotoCoreError, aiohttp.ClientError, OSError)

_Job = Callable[[], Awaitable[None]]
_Item = dict[str, Any]
# (partition key, at_ms or None for the latest): one distinct lookup.
_Slot = tuple[bytes, int | None]


def _code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _decode(item: _Item, table: str) -> Found:
    try:
        return bytes(item["v"]["B"]), int(item["event_ms"]["N"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(
            f"dynamodb: malformed item in {table!r} (pk {item.get('pk')!r}): needs "
            f"v (B) and event_ms (N); see docs/storage-layout.md"
        ) from exc


def _expired(item: _Item, now_s: float) -> bool:
    expires = item.get("expires_at")
    return expires is not None and float(expires["N"]) <= now_s


class DynamoDBStore(KVStore):
    """KVStore over two DynamoDB tables with aioboto3; one client, created on first use."""

    kind = "dynamodb"

    def __init__(
        self,
        table_prefix: str = "fetcher_",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        timeout_s: float = 0.1,
        write_timeout_s: float = 30.0,
        connect_timeout_s: float = 1.0,
        max_pool_connections: int = 64,
        max_attempts: int = 2,
        consistent_read: bool = False,
    ) -> None:
        """Check the settings; nothing connects (or fails) until the first call."""
        if not _TABLE_PREFIX.fullmatch(table_prefix):
            raise ValueError(f"table_prefix {table_prefix!r}: at most 240 of A-Z a-z 0-9 _ . -")
        timeouts = {"timeout_s": timeout_s, "write_timeout_s": write_timeout_s}
        timeouts["connect_timeout_s"] = connect_timeout_s
        for name, value in timeouts.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
        if max_pool_connections < 1 or max_attempts < 1:
            raise ValueError(
                f"max_pool_connections ({max_pool_connections}) and max_attempts "
                f"({max_attempts}) must be >= 1"
            )
        if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint_url {endpoint_url!r}: must start with http:// or https://")
        if not region:
            raise ValueError("region must be an AWS region name, e.g. us-east-1")
        self.table_prefix = table_prefix
        self.versions_table = f"{table_prefix}versions"
        self.latest_table = f"{table_prefix}latest"
        self.log_table = f"{table_prefix}log"
        self.endpoint_url = endpoint_url
        self.region = region
        self.timeout_s = timeout_s
        self.write_timeout_s = write_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_pool_connections = max_pool_connections
        self.max_attempts = max_attempts
        self.consistent_read = consistent_read
        self._prefixes: dict[str, bytes] = {}
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._starting: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Create the process's one client (no I/O with a local endpoint); first calls do it too."""
        await self._ensure_client(None)

    @property
    def client(self) -> Any:
        """The aiobotocore client (after start()), e.g. to register botocore event hooks."""
        if self._client is None:
            raise StoreError(f"dynamodb store {self._where()} is not started: await start()")
        return self._client

    async def _ensure_client(self, deadline: float | None) -> Any:
        """The client, waited for until `deadline` (loop time; None: no limit)."""
        self._check_open()
        if self._client is not None:
            return self._client
        if self._starting is None or self._starting.done():  # none yet, or the last one failed
            # A task of its own, awaited through shield: resolving AWS credentials may take
            # longer than one request's deadline, and a timed-out caller must not abort it.
            self._starting = asyncio.get_running_loop().create_task(self._create_client())
            self._starting.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.shield(self._starting)
        except TimeoutError:
            raise StoreError(
                f"dynamodb {self._where()}: the client was not ready in time"
            ) from None
        return self._client

    async def _create_client(self) -> None:
        # Timeouts per HTTP attempt; read_timeout is the write budget because one
        # client serves both paths and asyncio deadlines bound the request path.
        # Few attempts: a retry only helps when it fits in the caller's deadline.
        config = Config(
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.write_timeout_s,
            max_pool_connections=self.max_pool_connections,
            retries={"mode": "standard", "max_attempts": self.max_attempts},
        )
        # A local server (moto, DynamoDB Local) accepts any key; AWS uses the default chain.
        local = LOCAL_CREDENTIALS if self.endpoint_url else None
        stack = AsyncExitStack()
        try:
            client = await stack.enter_async_context(
                aioboto3.Session(local, local).client(
                    "dynamodb", self.region, endpoint_url=self.endpoint_url, config=config
                )
            )
        except _BACKEND_ERRORS as exc:
            await stack.aclose()
            raise StoreError(f"dynamodb {self._where()}: cannot create the client: {exc}") from exc
        if self._closed:  # close() ran meanwhile
            await stack.aclose()
            self._check_open()
        self._stack, self._client = stack, client

    async def close(self) -> None:
        """Close the client and its connection pool (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            await stack.aclose()

    async def ping(self) -> None:
        """Return when both tables are described in time; raise StoreError otherwise."""
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        client = await self._ensure_client(deadline)
        tables = (self.versions_table, self.latest_table)
        jobs: list[_Job] = [partial(client.describe_table, TableName=t) for t in tables]
        await self._run(jobs, self.timeout_s, "ping", deadline)

    async def create(self) -> None:
        """Create the versions, latest and log tables (see create_tables)."""
        await self.create_tables()

    async def create_tables(self, timeout_s: float = 120.0) -> None:
        """Create the three tables (on-demand, TTL on expires_at); existing ones are kept."""
        client = await self._ensure_client(None)
        jobs: list[_Job] = [
            partial(self._create_table, client, self.versions_table, ("event_ms", "N")),
            partial(self._create_table, client, self.latest_table, None),
            partial(self._create_table, client, self.log_table, ("sk", "B")),
        ]
        await self._run(jobs, timeout_s, "create_tables")

    async def _create_table(
        self, client: Any, table: str, sort_key: tuple[str, str] | None
    ) -> None:
        keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
        attributes = [{"AttributeName": "pk", "AttributeType": "B"}]
        if sort_key is not None:
            keys.append({"AttributeName": sort_key[0], "KeyType": "RANGE"})
            attributes.append({"AttributeName": sort_key[0], "AttributeType": sort_key[1]})
        try:
            await client.create_table(
                TableName=table, KeySchema=keys, AttributeDefinitions=attributes,
                BillingMode="PAY_PER_REQUEST",
            )  # fmt: skip
        except ClientError as exc:
            if _code(exc) != "ResourceInUseException":  # it exists already
                raise
        # A new table takes seconds to become ACTIVE on AWS; TTL needs it active.
        status = ""
        while status != "ACTIVE":
            if status:
                await asyncio.sleep(0.5)
            status = (await client.describe_table(TableName=table))["Table"]["TableStatus"]
        ttl = (await client.describe_time_to_live(TableName=table))["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            if ttl.get("AttributeName") != "expires_at":
                raise StoreError(
                    f"dynamodb table {table!r} has TTL on {ttl.get('AttributeName')!r}; "
                    "the store needs it on 'expires_at': disable it and run create_tables again"
                )
            return
        await client.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )

    # -- reads --------------------------------------------------------------------

    async def multi_get(self, lookups: Sequence[Lookup]) -> list[Found | None]:
        """Latest live version at or before each lookup's time, or None, within timeout_s."""
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        client = await self._ensure_client(deadline)
        # (pk, None) is a latest lookup, (pk, T) a point-in-time one; duplicates share
        # one request. T is clamped to int64 (-2**63 - 1 matches nothing).
        found: dict[_Slot, Found | None] = {}
        slots: list[_Slot] = []
        for dataset, key, at_ms in lookups:
            at = None if at_ms is None else max(min(at_ms, _INT64_MAX), _INT64_MIN - 1)
            slot = (self._pk(dataset, key), at)
            found[slot] = None
            slots.append(slot)
        if not slots:
            return []
        pks = [pk for pk, at in found if at is None]
        jobs: list[_Job] = [
            partial(self._batch_get, client, pks[i : i + _GET_CHUNK], found, deadline)
            for i in range(0, len(pks), _GET_CHUNK)
        ]
        jobs += [
            partial(self._query_at, client, pk, at, found) for pk, at in found if at is not None
        ]
        await self._run(jobs, self.timeout_s, "multi_get", deadline)
        return [found[slot] for slot in slots]

    async def _batch_get(
        self, client: Any, pks: list[bytes], out: dict[_Slot, Found | None], deadline: float
    ) -> None:
        keys: list[_Item] = [{"pk": {"B": pk}} for pk in pks]
        attempt = 0
        while True:
            reply = await client.batch_get_item(
                RequestItems={
                    self.latest_table: {"Keys": keys, "ConsistentRead": self.consistent_read}
                }
            )
            now_s = time.time()
            for item in reply.get("Responses", {}).get(self.latest_table, ()):
                if not _expired(item, now_s):
                    out[(bytes(item["pk"]["B"]), None)] = _decode(item, self.latest_table)
            # Throttling, or the 16 MB response limit: ask again for what is left.
            keys = reply.get("UnprocessedKeys", {}).get(self.latest_table, {}).get("Keys", [])
            if not keys:
                return
            attempt += 1
            await self._backoff(
                attempt, deadline, f"BatchGetItem left {len(keys)} keys unprocessed"
            )

    async def _query_at(
        self, client: Any, pk: bytes, at: int, out: dict[_Slot, Found | None]
    ) -> None:
        request: dict[str, Any] = {
            "TableName": self.versions_table,
            "KeyConditionExpression": "pk = :k AND event_ms <= :t",
            # Limit counts items before this filter: an expired newest version yields
            # an empty page and a LastEvaluatedKey to continue from.
            "FilterExpression": _LIVE,
            "ExpressionAttributeValues": {
                ":k": {"B": pk},
                ":t": {"N": str(at)},
                ":now": {"N": str(int(time.time()))},
            },
            "ScanIndexForward": False,
            "Limit": 1,
            "ConsistentRead": self.consistent_read,
        }
        while True:
            reply = await client.query(**request)
            items = reply.get("Items")
            if items:
                out[(pk, at)] = _decode(items[0], self.versions_table)
                return
            last = reply.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last
            request["Limit"] = min(request["Limit"] * 8, 100)

    async def read_logs(
        self, lookups: Sequence[LogLookup], known: Sequence[KnownPart | None] | None = None
    ) -> list[LogRead]:
        """Each lookup's log entries: one Query per lookup, all in parallel, within timeout_s.

        A lookup with a known part queries only the items after it (so it cannot tell
        whether the part is still there: `known` then means "no newer batch part").
        """
        self._check_open()
        if not lookups:
            return []
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        queries: list[tuple[bytes, tuple[int, int]]] = []
        scans: list[tuple[int, LogScan]] = []
        for i, (dataset, key, lo_ms, hi_ms, limit) in enumerate(lookups):
            pk = self._pk(dataset, key)  # Checked before any query.
            bounds = log_bounds(lo_ms, hi_ms, limit)
            if bounds is not None:
                queries.append((pk, bounds))
                scans.append((i, LogScan(limit, known_in(known, i, bounds), unseen=True)))
        if queries:
            client = await self._ensure_client(deadline)
            jobs: list[_Job] = [
                partial(self._query_log, client, pk, bounds, scan)
                for (pk, bounds), (_, scan) in zip(queries, scans, strict=True)
            ]
            await self._run(jobs, self.timeout_s, "read_logs", deadline)
        results: list[LogRead] = [EMPTY_LOG] * len(lookups)
        for i, scan in scans:
            results[i] = scan.result()
        return results

    async def _query_log(
        self, client: Any, pk: bytes, bounds: tuple[int, int], scan: LogScan
    ) -> None:
        request = log_query(self.log_table, pk, bounds, int(time.time()), self.consistent_read,
                            scan.known)  # fmt: skip
        while True:
            request["Limit"] = min(scan.wanted, _LOG_PAGE)
            reply = await client.query(**request)
            for item in reply.get("Items", ()):
                if scan.add(*read_item(item, self.log_table)):
                    return
            last = reply.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    async def append_log(self, entries: Sequence[LogEntry]) -> None:
        """Write log entries: per key, TransactWriteItems of at most 100 entries each, in parallel.

        A key's entries are atomic per transaction, so per 100 entries (docs/storage-layout.md).
        """
        self._check_open()
        deadline = asyncio.get_running_loop().time() + self.write_timeout_s
        now_s = time.time()
        for entry in entries:  # Validate everything before writing anything.
            check_entry(entry)
        transactions: list[list[_Item]] = []
        for (dataset, key), unique in by_key(entries).items():
            pk = self._pk(dataset, key)
            transactions += chunks([log_item(pk, entry, now_s) for entry in unique])
        if not transactions:
            return
        client = await self._ensure_client(deadline)
        jobs: list[_Job] = [partial(self._transact, client, items, deadline)
                            for items in transactions]  # fmt: skip
        await self._run(jobs, self.write_timeout_s, "append_log", deadline)

    async def _transact(self, client: Any, items: list[_Item], deadline: float) -> None:
        puts = [{"Put": {"TableName": self.log_table, "Item": item}} for item in items]
        attempt = 0
        while True:
            try:
                await client.transact_write_items(TransactItems=puts)
                return
            except ClientError as exc:
                # Cancelled by a concurrent transaction on the same entries: try again.
                if not is_conflict(exc):
                    raise
            attempt += 1
            await self._backoff(attempt, deadline, "TransactWriteItems conflicted")

    # -- writes -------------------------------------------------------------------

    async def multi_put(self, rows: Sequence[Row]) -> None:
        """Write the versions (BatchWriteItem), then the latest items (conditional puts)."""
        deadline = asyncio.get_running_loop().time() + self.write_timeout_s
        client = await self._ensure_client(deadline)
        now_s = time.time()
        versions: dict[tuple[bytes, int], _Item] = {}
        latest: dict[bytes, tuple[int, _Item]] = {}
        for row in rows:  # Validate everything before writing anything.
            item = self._item(row, now_s)
            pk = item["pk"]["B"]
            # One request must not name a key twice; the later row wins, as in every store.
            versions[(pk, row.event_ms)] = item
            newest = latest.get(pk)
            if newest is None or newest[0] <= row.event_ms:
                latest[pk] = (row.event_ms, item)
        if not versions:
            return
        items = list(versions.values())
        jobs: list[_Job] = [
            partial(self._batch_write, client, items[i : i + _WRITE_CHUNK], deadline)
            for i in range(0, len(items), _WRITE_CHUNK)
        ]
        await self._run(jobs, self.write_timeout_s, "multi_put (versions)", deadline)
        # After the versions, so a latest item never names a version that is missing.
        jobs = [partial(self._put_latest, client, ts, item) for ts, item in latest.values()]
        await self._run(jobs, self.write_timeout_s, "multi_put (latest)", deadline)

    def _item(self, row: Row, now_s: float) -> _Item:
        if type(row.event_ms) is not int or not _INT64_MIN <= row.event_ms <= _INT64_MAX:
            raise ValueError(f"event_ms {row.event_ms!r} of dataset {row.dataset!r}: not int64")
        if row.ttl_s is not None and row.ttl_s < 1:
            raise ValueError(f"ttl_s {row.ttl_s!r} of dataset {row.dataset!r}: must be >= 1")
        pk = self._pk(row.dataset, row.key)
        if len(pk) + len(row.value) + _ITEM_OVERHEAD > _MAX_ITEM:
            raise ValueError(
                f"value of {len(row.value)} bytes in dataset {row.dataset!r}: a DynamoDB item "
                f"holds {_MAX_ITEM} bytes: at most {_MAX_ITEM - _ITEM_OVERHEAD - len(pk)} here"
            )
        item: _Item = {"pk": {"B": pk}, "event_ms": {"N": str(row.event_ms)}, "v": {"B": row.value}}
        if row.ttl_s is not None:
            # Rounded up: an item never expires before its TTL has passed.
            item["expires_at"] = {"N": str(math.ceil(now_s + row.ttl_s))}
        return item

    async def _batch_write(self, client: Any, items: list[_Item], deadline: float) -> None:
        requests: list[_Item] = [{"PutRequest": {"Item": item}} for item in items]
        attempt = 0
        while True:
            reply = await client.batch_write_item(RequestItems={self.versions_table: requests})
            requests = reply.get("UnprocessedItems", {}).get(self.versions_table, [])
            if not requests:
                return
            attempt += 1
            await self._backoff(attempt, deadline, f"BatchWriteItem left {len(requests)} items")

    async def _put_latest(self, client: Any, event_ms: int, item: _Item) -> None:
        try:
            await client.put_item(
                TableName=self.latest_table,
                Item=item,
                ConditionExpression=_NEWER_OR_SAME,
                ExpressionAttributeValues={
                    ":e": {"N": str(event_ms)},
                    ":now": {"N": str(int(time.time()))},
                },
            )
        except ClientError as exc:
            # A newer version is the latest already: nothing to do.
            if _code(exc) != "ConditionalCheckFailedException":
                raise

    # -- plumbing -----------------------------------------------------------------

    def _pk(self, dataset: str, key: bytes) -> bytes:
        """The partition key of (dataset, key): dataset length-prefixed, then the key."""
        prefix = self._prefixes.get(dataset)
        if prefix is None:
            if not isinstance(dataset, str):
                raise ValueError(f"dataset must be a str, got {type(dataset).__name__}")
            raw = dataset.encode("utf-8")
            if not 1 <= len(raw) <= 255:
                raise ValueError(f"dataset {dataset!r}: 1..255 bytes of UTF-8, got {len(raw)}")
            prefix = bytes((len(raw),)) + raw
            self._prefixes[dataset] = prefix
        if len(prefix) + len(key) > _MAX_PK:
            raise ValueError(
                f"key of {len(key)} bytes in dataset {dataset!r}: DynamoDB partition keys "
                f"hold {_MAX_PK} bytes, so at most {_MAX_PK - len(prefix)} with this dataset"
            )
        return prefix + key

    async def _backoff(self, attempt: int, deadline: float, what: str) -> None:
        """Sleep (full jitter) before retry `attempt`; StoreError if that passes the deadline."""
        delay = random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt))
        if asyncio.get_running_loop().time() + delay >= deadline:
            raise StoreError(
                f"dynamodb {self._where()}: {what} after {attempt} attempts "
                "(throttled?); gave up at the deadline"
            )
        await asyncio.sleep(delay)

    async def _run(
        self, jobs: list[_Job], timeout_s: float, what: str, deadline: float | None = None
    ) -> None:
        """Run jobs, at most max_pool_connections at once, by the deadline; errors -> StoreError."""
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                if len(jobs) == 1:
                    await jobs[0]()
                elif jobs:
                    pending = iter(jobs)

                    async def worker() -> None:
                        for job in pending:
                            await job()

                    async with asyncio.TaskGroup() as group:
                        for _ in range(min(len(jobs), self.max_pool_connections)):
                            group.create_task(worker())
        except BaseExceptionGroup as errors:
            # The first failure cancelled the other jobs; report that one.
            first = errors.exceptions[0]
            if isinstance(first, StoreError):
                raise first from None
            if not isinstance(first, _BACKEND_ERRORS):
                raise
            error: BaseException = first
        except _BACKEND_ERRORS as exc:
            error = exc
        else:
            return
        if isinstance(error, TimeoutError) and not str(error):
            detail = f"no answer within {timeout_s:g} s"
        elif _code(error) == "ResourceNotFoundException":
            detail = (
                f"table {self.versions_table!r}, {self.latest_table!r} or {self.log_table!r} "
                f"does not exist: create them with DynamoDBStore.create_tables() ({error})"
            )
        else:
            detail = f"{type(error).__name__}: {error}"
        raise StoreError(f"dynamodb {self._where()}: {what} failed: {detail}") from error

    def _where(self) -> str:
        return f"{self.endpoint_url or self.region} tables {self.table_prefix}*"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"dynamodb store {self._where()} is closed")
