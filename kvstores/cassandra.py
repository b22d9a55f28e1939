"""CassandraStore: every version in one Cassandra table, read by single-partition queries.

Layout (docs/storage-layout.md has the CQL): one table `<keyspace>.versions` with
PRIMARY KEY ((dataset, key), event_ms) and event_ms clustered newest first, so
"latest at or before T" is `... WHERE dataset=? AND key=? AND event_ms<=? LIMIT 1`:
one partition, one replica set, the first row of a slice.

Cassandra has no multi-partition read worth using (IN over partitions just moves the
fan-out to one coordinator), so multi_get sends one query per lookup, all at once,
token-aware (straight to a replica), at most `max_in_flight` outstanding. The
driver's callbacks run on its I/O thread and are handed to the event loop with
call_soon_threadsafe; nothing on the request path blocks the loop. Connecting and
preparing run in a worker thread on first use, and are retried by a later call
after a failure, so a store built while Cassandra is down recovers by itself.

Aggregation logs live in `<keyspace>.log` (kvstores.cassandra_log); their statements are
prepared on the first log call, so a keyspace without that table serves versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.query import tuple_factory

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
from kvstores.cassandra_config import (
    TABLE,
    consistency_level,
    keyspace_cql,
    log_table_cql,
    parse_url,
    table_cql,
    valid_keyspace,
)
from kvstores.cassandra_log import (
    LogStatements,
    log_batch,
    prepare_log,
    run_scans,
    scan_statement,
)
from kvstores.logs import LogScan, by_key, check_entry, known_in, log_bounds

__all__ = ["CassandraStore"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# Cassandra rejects a TTL above 20 years.
_MAX_TTL_S = 20 * 365 * 24 * 3600
# Rows per write wave: each wave is bounded by write_timeout_s as a whole.
_WRITE_CHUNK = 1000
# DDL waits for every node to agree on the schema; that takes seconds, not millis.
_DDL_TIMEOUT_S = 60.0
# A partition key component holds at most this many bytes.
_MAX_KEY = 65535


@dataclass(frozen=True, slots=True)
class _Statements:
    """Prepared once per store: the only statements the request path runs."""

    latest: Any
    at_or_before: Any
    insert: Any
    ping: Any


def _describe(exc: BaseException) -> str:
    # asyncio.timeout raises a bare TimeoutError; say what it means.
    return f"{type(exc).__name__}: {str(exc) or 'no answer in time'}"


def _check_log_key(dataset: str, key: bytes) -> None:
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset {dataset!r}: must be a non-empty str")
    if len(key) > _MAX_KEY:
        raise ValueError(
            f"key of {len(key)} bytes in dataset {dataset!r}: Cassandra holds at most {_MAX_KEY}"
        )


class CassandraStore(KVStore):
    """KVStore over Apache Cassandra with the DataStax driver; connects lazily."""

    kind = "cassandra"

    def __init__(
        self,
        contact_points: str | Sequence[str] = ("127.0.0.1",),
        port: int = 9042,
        keyspace: str = "features",
        *,
        timeout_s: float = 0.1,
        write_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        consistency: str | int = "LOCAL_ONE",
        write_consistency: str | int = "LOCAL_QUORUM",
        max_in_flight: int = 256,
        local_dc: str | None = None,
        replication: Mapping[str, str | int] | None = None,
        retry_connect_s: float = 1.0,
        protocol_version: int = 5,
    ) -> None:
        """Check the options; nothing connects until the first call (or create_schema)."""
        points = [contact_points] if isinstance(contact_points, str) else list(contact_points)
        if not points or not all(points):
            raise ValueError(f"contact_points must name at least one host, got {contact_points!r}")
        valid_keyspace(keyspace)
        for name, value in (("timeout_s", timeout_s), ("write_timeout_s", write_timeout_s),
                            ("connect_timeout_s", connect_timeout_s),
                            ("retry_connect_s", retry_connect_s)):  # fmt: skip
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.contact_points = points
        self.port = port
        self.keyspace = keyspace
        self.timeout_s = timeout_s
        self.write_timeout_s = write_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.consistency = consistency_level(consistency)
        self.write_consistency = consistency_level(write_consistency)
        self.max_in_flight = max_in_flight
        self.local_dc = local_dc
        # Checked now so a bad replication setting fails at startup, not at load time.
        self.replication: dict[str, str | int] = dict(
            replication or {"class": "SimpleStrategy", "replication_factor": 1}
        )
        keyspace_cql(keyspace, self.replication)
        self.retry_connect_s = retry_connect_s
        # Pinned: negotiating down from the driver's newest version costs a
        # reconnect per step at every connect. v5 needs Cassandra 4.0 or newer.
        self.protocol_version = protocol_version
        self._slots = asyncio.Semaphore(max_in_flight)
        # Guards _cluster/_session between the setup thread and create_schema's thread.
        self._lock = threading.Lock()
        self._cluster: Any = None
        self._session: Session | None = None
        self._statements: _Statements | None = None
        self._log_statements: LogStatements | None = None
        self._setup_task: asyncio.Task[_Statements] | None = None
        self._setup_failed_at = 0.0
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 0.1) -> CassandraStore:
        """Build a store from `cassandra://host[,host...][:port]/keyspace?option=value...`."""
        try:
            return cls(**parse_url(url, timeout_s=timeout_s))
        except ValueError as exc:
            message = str(exc)
            raise ValueError(
                message if url in message else f"store URL {url!r}: {message}"
            ) from None

    # -- connecting ---------------------------------------------------------------

    def _open_session(self) -> Session:
        """Connect (blocking; worker thread only). A failed Cluster is shut down and dropped."""
        with self._lock:
            if self._closed:
                raise StoreError(f"cassandra store {self._where()} is closed")
            if self._session is not None:
                return self._session
            profile = ExecutionProfile(
                load_balancing_policy=TokenAwarePolicy(
                    DCAwareRoundRobinPolicy(local_dc=self.local_dc)
                ),
                consistency_level=self.consistency,
                request_timeout=self.timeout_s,
                row_factory=tuple_factory,
            )
            cluster = Cluster(
                self.contact_points,
                port=self.port,
                protocol_version=self.protocol_version,
                execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                connect_timeout=self.connect_timeout_s,
                control_connection_timeout=self.connect_timeout_s,
                # The default backs off to 10 minutes; a feature server wants its
                # nodes back within seconds of their return.
                reconnection_policy=ExponentialReconnectionPolicy(0.5, 5.0),
            )
            try:
                session = cluster.connect()
            except Exception as exc:
                cluster.shutdown()
                raise StoreError(f"cassandra {self._where()}: connect failed: {exc}") from exc
            self._cluster, self._session = cluster, session
            return session

    def _prepare(self, session: Session) -> _Statements:
        """Prepare the request-path statements (blocking; worker thread only)."""
        table = f"{self.keyspace}.{TABLE}"
        select = f"SELECT value, event_ms FROM {table} WHERE dataset = ? AND key = ?"
        try:
            statements = _Statements(
                latest=session.prepare(f"{select} LIMIT 1"),
                at_or_before=session.prepare(f"{select} AND event_ms <= ? LIMIT 1"),
                insert=session.prepare(
                    f"INSERT INTO {table} (dataset, key, event_ms, value) "
                    "VALUES (?, ?, ?, ?) USING TTL ?"
                ),
                ping=session.prepare("SELECT release_version FROM system.local"),
            )
        except Exception as exc:
            raise StoreError(
                f"cassandra {self._where()}: cannot prepare statements on {table} ({exc}); "
                f"if the table is missing, create it: `fetcher load` or "
                f"CassandraStore.create_schema() (CQL in docs/storage-layout.md)"
            ) from exc
        statements.insert.consistency_level = self.write_consistency
        # Running any of them twice leaves the same data (an insert keeps its
        # client-side timestamp across retries): the driver may retry them.
        for statement in (statements.latest, statements.at_or_before, statements.insert):
            statement.is_idempotent = True
        return statements

    def _setup_blocking(self) -> _Statements:
        return self._prepare(self._open_session())

    async def _setup(self) -> _Statements:
        try:
            statements = await asyncio.to_thread(self._setup_blocking)
        except BaseException:
            self._setup_failed_at = time.monotonic()
            raise
        self._statements = statements
        return statements

    async def _ready(self) -> _Statements:
        """The prepared statements, connecting first if needed; raises StoreError."""
        self._check_open()
        if self._statements is not None:
            return self._statements
        task = self._setup_task
        if task is not None and task.done() and (task.cancelled() or task.exception()):
            if time.monotonic() - self._setup_failed_at < self.retry_connect_s:
                # Fail fast while down instead of a connect attempt per request.
                failure = None if task.cancelled() else task.exception()
                raise StoreError(
                    f"{failure or 'connect cancelled'} (retrying within {self.retry_connect_s}s)"
                ) from failure
            task = None
        if task is None:
            task = asyncio.get_running_loop().create_task(self._setup())
            # Marks the exception retrieved when every waiter has timed out.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._setup_task = task
        # shield: a caller's timeout must not cancel the attempt others share.
        return await asyncio.shield(task)

    async def create(self) -> None:
        """Create the keyspace and table (see create_schema)."""
        await self.create_schema()

    async def create_schema(self) -> None:
        """CREATE KEYSPACE and TABLE IF NOT EXISTS (the CQL in docs/storage-layout.md)."""
        self._check_open()
        self._statements = await asyncio.to_thread(self._create_schema_blocking)

    def _create_schema_blocking(self) -> _Statements:
        session = self._open_session()
        try:
            for cql in (
                keyspace_cql(self.keyspace, self.replication),
                table_cql(self.keyspace),
                log_table_cql(self.keyspace),
            ):
                session.execute(cql, timeout=_DDL_TIMEOUT_S)
        except Exception as exc:
            raise StoreError(f"cassandra {self._where()}: schema creation failed: {exc}") from exc
        self._log_statements = self._prepare_log(session)
        return self._prepare(session)

    def _prepare_log(self, session: Session) -> LogStatements:
        """Prepare the log's statements (blocking; worker thread only)."""
        try:
            return prepare_log(session, self.keyspace, self.write_consistency)
        except Exception as exc:
            raise StoreError(
                f"cassandra {self._where()}: cannot prepare statements on {self.keyspace}.log "
                f"({exc}); if the table is missing, create it: CassandraStore.create_schema() "
                "(CQL in docs/storage-layout.md, \"the log\")"
            ) from exc

    async def _log_ready(self) -> LogStatements:
        """The log's prepared statements, connecting and preparing first if needed."""
        if self._log_statements is None:
            await self._ready()
            session = self._session
            if session is None:
                raise StoreError(f"cassandra store {self._where()} is closed")
            # Concurrent first calls may each prepare: harmless, and only once per store.
            self._log_statements = await asyncio.to_thread(self._prepare_log, session)
        return self._log_statements

    # -- requests -----------------------------------------------------------------

    def _submit(self, statement: Any, timeout_s: float) -> asyncio.Future[Any]:
        """Send one statement; the future gets its rows. The caller holds one slot."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def finish(rows: Any, exc: BaseException | None) -> None:
            # Runs on the loop. The slot is held until the driver is done with the
            # request, even when the caller gave up on it, so max_in_flight bounds
            # what Cassandra really has outstanding.
            self._slots.release()
            if future.done():
                return
            if exc is None:
                future.set_result(rows)
            else:
                future.set_exception(exc)

        def from_driver(rows: Any, exc: BaseException | None) -> None:
            # A closed loop (RuntimeError) has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(finish, rows, exc)

        session = self._session
        if session is None:
            raise StoreError(f"cassandra store {self._where()} is closed")
        response = session.execute_async(statement, timeout=timeout_s)
        response.add_callbacks(lambda rows: from_driver(rows, None),
                               lambda exc: from_driver(None, exc))  # fmt: skip
        return future

    async def _run_all(self, statements: Iterable[Any], timeout_s: float) -> list[Any]:
        """Send statements concurrently (bounded by max_in_flight); their rows, in order."""
        futures: list[asyncio.Future[Any]] = []
        try:
            for statement in statements:
                await self._slots.acquire()
                try:
                    futures.append(self._submit(statement, timeout_s))
                except BaseException:
                    self._slots.release()
                    raise
            return [await future for future in futures]
        finally:
            for future in futures:
                # After an error or timeout nobody awaits the rest: drop them quietly.
                future.cancel()

    async def multi_get(
        self, lookups: Sequence[Lookup], *, consistency: str | int | None = None
    ) -> list[Found | None]:
        """Latest version at or before each lookup's time, or None; one query per lookup.

        The queries run concurrently; `consistency` overrides the read consistency for this call.
        """
        self._check_open()
        if not lookups:
            return []
        level = None if consistency is None else consistency_level(consistency)
        try:
            async with asyncio.timeout(self.timeout_s):
                statements = await self._ready()
                bound = []
                for dataset, key, at_ms in lookups:
                    if at_ms is None:
                        stmt = statements.latest.bind((dataset, key))
                    elif at_ms < _INT64_MIN:
                        stmt = None  # Before any representable event time.
                    else:
                        stmt = statements.at_or_before.bind((dataset, key, min(at_ms, _INT64_MAX)))
                    if stmt is not None and level is not None:
                        stmt.consistency_level = level
                    bound.append(stmt)
                replies = await self._run_all((s for s in bound if s is not None), self.timeout_s)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cassandra {self._where()}: multi_get: {_describe(exc)}") from exc
        results: list[Found | None] = []
        answers = iter(replies)
        for stmt in bound:
            rows = None if stmt is None else next(answers)
            results.append((rows[0][0] or b"", rows[0][1]) if rows else None)
        return results

    async def multi_put(self, rows: Sequence[Row], *, consistency: str | int | None = None) -> None:
        """Write every row (INSERT ... USING TTL), concurrently, in waves of 1000; StoreError."""
        self._check_open()
        latest: dict[tuple[str, bytes, int], Row] = {}
        for row in rows:  # Validate everything before writing anything.
            if not isinstance(row.dataset, str) or not row.dataset:
                raise ValueError(f"dataset {row.dataset!r}: must be a non-empty str")
            if type(row.event_ms) is not int or not _INT64_MIN <= row.event_ms <= _INT64_MAX:
                raise ValueError(f"event_ms {row.event_ms!r} of dataset {row.dataset!r}: not int64")
            if row.ttl_s is not None and not 1 <= row.ttl_s <= _MAX_TTL_S:
                raise ValueError(
                    f"ttl_s {row.ttl_s!r} of dataset {row.dataset!r}: must be 1..{_MAX_TTL_S}"
                )
            # Concurrent writes of one version would race; the last row given wins.
            latest[(row.dataset, row.key, row.event_ms)] = row
        if not latest:
            return
        level = None if consistency is None else consistency_level(consistency)
        unique = list(latest.values())
        try:
            async with asyncio.timeout(self.write_timeout_s):
                statements = await self._ready()
            for start in range(0, len(unique), _WRITE_CHUNK):
                bound = []
                for row in unique[start : start + _WRITE_CHUNK]:
                    ttl = 0 if row.ttl_s is None else int(row.ttl_s)  # TTL 0: never expires
                    stmt = statements.insert.bind(
                        (row.dataset, row.key, row.event_ms, row.value, ttl)
                    )
                    if level is not None:
                        stmt.consistency_level = level
                    bound.append(stmt)
                async with asyncio.timeout(self.write_timeout_s):
                    await self._run_all(bound, self.write_timeout_s)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cassandra {self._where()}: multi_put: {_describe(exc)}") from exc

    async def read_logs(
        self,
        lookups: Sequence[LogLookup],
        known: Sequence[KnownPart | None] | None = None,
        *,
        consistency: str | int | None = None,
    ) -> list[LogRead]:
        """Each lookup's log entries: one single-partition query per lookup, all concurrent.

        At most `max_in_flight` outstanding; a query pages until its scan is complete. A
        lookup with a known part reads only the rows after it (so it cannot tell whether
        the part is still there: `known` then means "no newer batch part").
        """
        self._check_open()
        if not lookups:
            return []
        plans = []
        for i, (dataset, key, lo_ms, hi_ms, limit) in enumerate(lookups):
            _check_log_key(dataset, key)  # Checked before any query.
            bounds = log_bounds(lo_ms, hi_ms, limit)
            if bounds is not None:
                part = known_in(known, i, bounds)
                plans.append((i, dataset, key, bounds, LogScan(limit, part, unseen=True)))
        results: list[LogRead] = [EMPTY_LOG] * len(lookups)
        if not plans:  # No range can hold an entry: nothing to ask.
            return results
        level = None if consistency is None else consistency_level(consistency)
        try:
            async with asyncio.timeout(self.timeout_s):
                statements = await self._log_ready()
                jobs = []
                for _, dataset, key, bounds, scan in plans:
                    statement = scan_statement(statements, dataset, key, bounds, scan.limit,
                                               scan.known)  # fmt: skip
                    if level is not None:
                        statement.consistency_level = level
                    jobs.append((statement, scan))
                session = self._session
                if session is None:
                    raise StoreError(f"cassandra store {self._where()} is closed")
                await run_scans(session, self._slots, jobs, self.timeout_s)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cassandra {self._where()}: read_logs: {_describe(exc)}") from exc
        for i, _, _, _, scan in plans:
            results[i] = scan.result()
        return results

    async def append_log(
        self, entries: Sequence[LogEntry], *, consistency: str | int | None = None
    ) -> None:
        """Write log entries: one single-partition batch per key (atomic), all concurrent."""
        self._check_open()
        for entry in entries:  # Validate everything before writing anything.
            check_entry(entry, max_ttl_s=_MAX_TTL_S)
            _check_log_key(entry.dataset, entry.key)
        keys = list(by_key(entries).values())
        if not keys:
            return
        level = self.write_consistency if consistency is None else consistency_level(consistency)
        try:
            async with asyncio.timeout(self.write_timeout_s):
                statements = await self._log_ready()
            for start in range(0, len(keys), _WRITE_CHUNK):
                batches = [log_batch(statements, unique, level)
                           for unique in keys[start : start + _WRITE_CHUNK]]  # fmt: skip
                async with asyncio.timeout(self.write_timeout_s):
                    await self._run_all(batches, self.write_timeout_s)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cassandra {self._where()}: append_log: {_describe(exc)}") from exc

    async def ping(self) -> None:
        """Return when a node answers a query within the timeout; raise StoreError otherwise.

        A first ping waits up to connect_timeout_s for the connection: call it at startup.
        """
        self._check_open()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                statements = await self._ready()
            async with asyncio.timeout(self.timeout_s):
                await self._run_all([statements.ping], self.timeout_s)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cassandra {self._where()}: ping failed: {_describe(exc)}") from exc

    async def close(self) -> None:
        """Shut the driver down (its threads and connections); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._statements = None
        self._log_statements = None
        # In a thread: the lock may be held by a connect in progress, and
        # shutdown joins the driver's threads.
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        with self._lock:
            cluster, self._cluster, self._session = self._cluster, None, None
        if cluster is not None:
            cluster.shutdown()

    def _where(self) -> str:
        return f"{','.join(self.contact_points)}:{self.port}/{self.keyspace}"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"cassandra store {self._where()} is closed")
