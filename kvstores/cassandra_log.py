"""The aggregation log on Cassandra: its statements, the paged scan of one key, its batches.

Table `<keyspace>.log` (kvstores.cassandra_config.log_table_cql): one partition per
(dataset, key), rows clustered by (ts_ms DESC, id DESC), so a read is one
single-partition slice, newest first, that the store stops paging once the scan is
complete; a key's entries are written as one single-partition batch, atomic and isolated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cassandra.query import BatchStatement, BatchType

from kvstores.base import KnownPart, LogEntry
from kvstores.cassandra_config import LOG_TABLE
from kvstores.logs import LogScan

__all__ = ["LogStatements", "log_batch", "prepare_log", "run_scans", "scan_statement"]

# Rows per page of a scan: a scan that meets its batch part soon reads one small page;
# a long one costs a round trip per page.
_PAGE = 500
# CQL's LIMIT is a signed 32-bit int.
_MAX_LIMIT = 2**31 - 1


@dataclass(frozen=True, slots=True)
class LogStatements:
    """The log's statements, prepared once per store (on its first log call)."""

    scan: Any
    # The scan of a lookup whose known batch part is left out: entries after (ts, empty id).
    scan_after: Any
    insert: Any


def prepare_log(session: Any, keyspace: str, write_consistency: int) -> LogStatements:
    """Prepare the log's read and insert (blocking; worker thread only)."""
    table = f"{keyspace}.{LOG_TABLE}"
    statements = LogStatements(
        scan=session.prepare(
            f"SELECT ts_ms, id, payload FROM {table} "
            "WHERE dataset = ? AND key = ? AND ts_ms >= ? AND ts_ms <= ? LIMIT ?"
        ),
        # A multi-column slice from just after the known part's (ts_ms, empty id), the
        # part itself excluded, so its payload is never read or sent.
        scan_after=session.prepare(
            f"SELECT ts_ms, id, payload FROM {table} "
            "WHERE dataset = ? AND key = ? AND (ts_ms, id) > (?, 0x) AND (ts_ms) <= (?) LIMIT ?"
        ),
        insert=session.prepare(
            f"INSERT INTO {table} (dataset, key, ts_ms, id, payload) "
            "VALUES (?, ?, ?, ?, ?) USING TTL ?"
        ),
    )
    statements.insert.consistency_level = write_consistency
    statements.scan.is_idempotent = True
    statements.scan_after.is_idempotent = True
    return statements


def scan_statement(
    statements: LogStatements,
    dataset: str,
    key: bytes,
    bounds: tuple[int, int],
    limit: int,
    known: KnownPart | None = None,
) -> Any:
    """The bound read of one lookup: never more rows than the scan may take (limit + 1).

    With a `known` part (in `bounds`), the rows after it only.
    """
    most = min(limit + 1, _MAX_LIMIT)
    if known is None:
        statement = statements.scan.bind((dataset, key, bounds[0], bounds[1], most))
    else:
        statement = statements.scan_after.bind((dataset, key, known[0], bounds[1], most))
    statement.fetch_size = min(most, _PAGE)
    return statement


def log_batch(statements: LogStatements, entries: Sequence[LogEntry], consistency: int) -> Any:
    """One key's entries as one single-partition batch (distinct identities, TTL per entry)."""
    # UNLOGGED: a single-partition batch is atomic and isolated without the batch log.
    batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=consistency)
    for entry in entries:
        ttl = 0 if entry.ttl_s is None else entry.ttl_s  # TTL 0: never expires
        batch.add(
            statements.insert, (entry.dataset, entry.key, entry.ts_ms, entry.id, entry.payload, ttl)
        )
    # Applying it twice leaves the same rows (one client-side timestamp): retries are safe.
    batch.is_idempotent = True
    return batch


async def run_scans(
    session: Any, slots: asyncio.Semaphore, jobs: Sequence[tuple[Any, LogScan]], timeout_s: float
) -> None:
    """Run every (statement, scan) concurrently, each holding one of `slots` while it runs."""
    futures: list[asyncio.Future[None]] = []
    try:
        for statement, scan in jobs:
            await slots.acquire()
            try:
                futures.append(_submit_scan(session, statement, scan, timeout_s, slots.release))
            except BaseException:
                slots.release()
                raise
        for future in futures:
            await future
    finally:
        for future in futures:
            future.cancel()  # after an error or timeout nobody awaits the rest


def _submit_scan(
    session: Any,
    statement: Any,
    scan: LogScan,
    timeout_s: float,
    release: Callable[[], None],
) -> asyncio.Future[None]:
    """Run one scan, page by page until it is complete; the future is done then.

    The caller holds one in-flight slot; `release` gives it back once the driver is done
    with the request (after the last page asked for, even when the caller gave up).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    response = session.execute_async(statement, timeout=timeout_s)

    def finish(exc: BaseException | None) -> None:
        release()
        if not future.done():
            if exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)

    def page(rows: Any) -> None:
        # On the loop. Another page only while the scan wants more and someone waits.
        try:
            for ts_ms, id, payload in rows:
                if scan.add(ts_ms, id or b"", payload or b""):
                    break
            else:
                if response.has_more_pages and not future.done():
                    response.start_fetching_next_page()
                    return
        except Exception as exc:
            finish(exc)
            return
        finish(None)

    def from_driver(handler: Callable[[Any], None], value: Any) -> None:
        # A closed loop (RuntimeError) has nobody waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(handler, value)

    response.add_callbacks(lambda rows: from_driver(page, rows),
                           lambda exc: from_driver(finish, exc))  # fmt: skip
    return future
