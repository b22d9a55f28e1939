"""EmbeddedStore: versions of every key in a local LMDB file, no server needed.

One LMDB environment, one (unnamed) database. The byte layout, documented in
docs/storage-layout.md, makes "the latest version at or before T" one B-tree seek:

- key   = len(dataset) (1 byte) + dataset UTF-8 + len(key) (2 bytes, big-endian)
          + key bytes + (2**63 - 1 - event_ms) as 8 bytes unsigned big-endian;
  the versions of one entity key are contiguous and sorted newest first.
- value = expiry time in ms since the epoch (8 bytes big-endian, 0 = never) + value bytes.

Aggregation logs live in the same database under keys starting with 00
(kvstores.embedded_log), which no version key does.

Several reader processes and one writer process (`fetcher load`) may share the
file: LMDB's lock file coordinates them and readers never block the writer.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import lmdb

from kvstores.base import (
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
from kvstores.embedded_log import LOG_MARK, TS_SIZE, scan_log
from kvstores.logs import check_entry, known_in, log_bounds

__all__ = ["DEFAULT_MAP_SIZE", "EmbeddedStore"]

#: Default map size: the largest the file may grow to. The file is sparse, so a
#: large value costs address space, not disk.
DEFAULT_MAP_SIZE = 8 << 30

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_U64 = struct.Struct(">Q")
_KEY_LEN = struct.Struct(">H")
_DATASET_MAX = 255
_KEY_MAX = 65535
# Bytes of the stored key that are not the dataset or the entity key.
_FRAMING = 1 + 2 + 8

_T = TypeVar("_T")


def _inverted(event_ms: int) -> bytes:
    # Newest first: a larger event time must sort before a smaller one. The
    # result spans 0..2**64-1 for the whole int64 range, so pack it unsigned.
    return _U64.pack(_INT64_MAX - event_ms)


def _stored_key(item: tuple[bytes, bytes]) -> bytes:
    return item[0]


def _event_ms(stored_key: bytes) -> int:
    return _INT64_MAX - int(_U64.unpack_from(stored_key, len(stored_key) - 8)[0])


class EmbeddedStore(KVStore):
    """KVStore over a local LMDB environment (a directory holding data.mdb and lock.mdb).

    LMDB allows one open environment per path per process: share one store object.
    Open it after forking worker processes, never before.
    """

    kind = "embedded"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        readonly: bool = False,
        max_readers: int = 1024,
        max_versions: int | None = 16,
        sync: bool = True,
    ) -> None:
        """Open (creating unless readonly) the environment at `path`; raises StoreError."""
        if max_versions is not None and max_versions < 1:
            raise ValueError(f"max_versions must be >= 1 or None, got {max_versions}")
        if map_size < 1 << 20:
            raise ValueError(f"map_size must be at least 1 MiB, got {map_size} bytes")
        self.path = os.fspath(path)
        self.readonly = readonly
        self.max_versions = max_versions
        try:
            if not readonly:
                os.makedirs(self.path, exist_ok=True)
            # lock=True: the lock file is what makes several processes safe.
            # max_readers: every open read txn of every process takes a slot.
            # readahead=False: lookups are random; readahead would evict hot pages.
            self._env: Any = lmdb.open(
                self.path,
                map_size=map_size,
                readonly=readonly,
                create=not readonly,
                lock=True,
                max_readers=max_readers,
                max_dbs=0,
                readahead=False,
                sync=sync,
                metasync=sync,
            )
        except (lmdb.Error, OSError) as exc:
            hint = ""
            if readonly and not os.path.exists(self.path):
                hint = " (readonly and missing: is the path right, was it ever written?)"
            raise StoreError(f"cannot open embedded store {self.path!r}{hint}: {exc}") from exc
        self._max_key = int(self._env.max_key_size())
        self._prefixes: dict[str, bytes] = {}
        # dataset -> (its prefix, the longest entity key it fits): the read path's check.
        self._key_rooms: dict[str, tuple[bytes, int]] = {}
        # LMDB allows one write txn at a time; queueing writers here keeps them
        # from each holding a worker thread while blocked on LMDB's mutex, and
        # lets close() wait for the write in flight.
        self._write_lock = asyncio.Lock()
        self._closed = False

    # -- key layout ---------------------------------------------------------------

    def _dataset_prefix(self, dataset: str) -> bytes:
        # Built once per dataset: lookups of one dataset share it.
        prefix = self._prefixes.get(dataset)
        if prefix is None:
            if not isinstance(dataset, str):
                raise ValueError(f"dataset must be a str, got {type(dataset).__name__}")
            raw = dataset.encode("utf-8")
            if not 1 <= len(raw) <= _DATASET_MAX:
                raise ValueError(
                    f"dataset {dataset!r} is {len(raw)} bytes of UTF-8; "
                    f"the embedded store needs 1..{_DATASET_MAX}"
                )
            prefix = bytes((len(raw),)) + raw
            self._prefixes[dataset] = prefix
        return prefix

    def _entity_prefix(self, dataset: str, key: bytes) -> bytes:
        """Stored-key prefix shared by all versions of (dataset, key)."""
        room = self._key_rooms.get(dataset)
        if room is not None and len(key) <= room[1]:
            return room[0] + _KEY_LEN.pack(len(key)) + key
        prefix = self._checked_entity_prefix(dataset, key)
        dataset_prefix = self._prefixes[dataset]
        longest = min(_KEY_MAX, self._max_key - _FRAMING - (len(dataset_prefix) - 1))
        self._key_rooms[dataset] = (dataset_prefix, longest)
        return prefix

    def _checked_entity_prefix(self, dataset: str, key: bytes) -> bytes:
        """_entity_prefix with every check (and its error), for a dataset's first key."""
        dataset_prefix = self._dataset_prefix(dataset)
        if len(key) > _KEY_MAX:
            raise ValueError(f"key of {len(key)} bytes in dataset {dataset!r}: at most {_KEY_MAX}")
        if len(dataset_prefix) - 1 + len(key) + _FRAMING > self._max_key:
            # LMDB caps a stored key (511 bytes in stock builds); say so plainly.
            room = self._max_key - _FRAMING - (len(dataset_prefix) - 1)
            raise ValueError(
                f"key of {len(key)} bytes in dataset {dataset!r} is too long for LMDB: "
                f"at most {room} bytes with this dataset name"
            )
        return dataset_prefix + _KEY_LEN.pack(len(key)) + key

    def _log_prefix(self, dataset: str, key: bytes, id_size: int = 0) -> bytes:
        """Stored-key prefix of the log of (dataset, key) (kvstores.embedded_log)."""
        dataset_prefix = self._dataset_prefix(dataset)
        if len(key) > _KEY_MAX:
            raise ValueError(f"key of {len(key)} bytes in dataset {dataset!r}: at most {_KEY_MAX}")
        prefix = LOG_MARK + dataset_prefix + _KEY_LEN.pack(len(key)) + key
        if len(prefix) + TS_SIZE + id_size > self._max_key:
            # LMDB caps a stored key (511 bytes in stock builds); say so plainly.
            room = self._max_key - TS_SIZE - len(prefix) + len(key)
            raise ValueError(
                f"key of {len(key)} bytes in dataset {dataset!r} with an id of {id_size} bytes "
                f"is too long for an LMDB log key: key + id at most {room} bytes with this "
                "dataset name"
            )
        return prefix

    # -- reads --------------------------------------------------------------------

    async def multi_get(self, lookups: Sequence[Lookup]) -> list[Found | None]:
        """Latest visible version at or before each lookup's time, or None.

        Runs synchronously on the event loop on purpose: a lookup is a B-tree seek
        in a memory map (microseconds when the pages are resident), far cheaper
        than handing the batch to a thread. A cold page fault may block briefly.
        """
        self._check_open()
        return self._retry_resized(lambda: self._get_batch(lookups))

    def _get_batch(self, lookups: Sequence[Lookup]) -> list[Found | None]:
        now_ms = time.time_ns() // 1_000_000
        results: list[Found | None] = []
        append = results.append
        entity_prefix = self._entity_prefix
        unpack = _U64.unpack_from
        # One short read txn per batch: a consistent snapshot, and a reader slot
        # held only for the microseconds of the batch so the writer can reuse pages.
        with self._env.begin(buffers=False) as txn:
            cursor = txn.cursor()
            set_range, stored_key_at, stored_value_at = cursor.set_range, cursor.key, cursor.value
            for dataset, key, at_ms in lookups:
                prefix = entity_prefix(dataset, key)
                if at_ms is None:
                    seek = prefix
                elif at_ms < _INT64_MIN:
                    append(None)
                    continue
                else:
                    seek = prefix + _inverted(min(at_ms, _INT64_MAX))
                # _first_visible inlined for its usual answer, the first version found
                # (no iterator, no tuple per version); an expired one takes the loop.
                if not set_range(seek):
                    append(None)
                    continue
                stored_key = stored_key_at()
                size = len(prefix) + 8
                if len(stored_key) != size or not stored_key.startswith(prefix):
                    append(None)
                    continue
                stored_value = stored_value_at()
                expires_ms = unpack(stored_value)[0]
                if expires_ms == 0 or expires_ms > now_ms:
                    append((stored_value[8:], _INT64_MAX - unpack(stored_key, size - 8)[0]))
                else:
                    append(self._first_visible(cursor, prefix, seek, now_ms))
        return results

    @staticmethod
    def _first_visible(cursor: Any, prefix: bytes, seek: bytes, now_ms: int) -> Found | None:
        if not cursor.set_range(seek):
            return None
        size = len(prefix) + 8
        for stored_key, stored_value in cursor:
            # The prefix holds both lengths, so a matching prefix of the right size
            # is exactly this entity key; anything else is the next entity.
            if len(stored_key) != size or not stored_key.startswith(prefix):
                return None
            expires_ms = _U64.unpack_from(stored_value)[0]
            if expires_ms == 0 or expires_ms > now_ms:
                return stored_value[8:], _event_ms(stored_key)
            # Expired versions are invisible: fall through to the next older one.
        return None

    async def read_logs(
        self, lookups: Sequence[LogLookup], known: Sequence[KnownPart | None] | None = None
    ) -> list[LogRead]:
        """Each lookup's log entries, newest first, in one read txn on the event loop.

        On the loop for the reason multi_get is: a scan is seeks and steps in a memory map.
        A known part met with its known length is not copied out.
        """
        self._check_open()
        if not lookups:
            return []
        # Checked and encoded before reading: a bad lookup raises before any work.
        plans = []
        for i, (dataset, key, lo_ms, hi_ms, limit) in enumerate(lookups):
            bounds = log_bounds(lo_ms, hi_ms, limit)
            plans.append((self._log_prefix(dataset, key), bounds, limit,
                          known_in(known, i, bounds)))  # fmt: skip

        def read() -> list[LogRead]:
            now_ms = time.time_ns() // 1_000_000
            with self._env.begin(buffers=False) as txn:
                cursor = txn.cursor()
                return [scan_log(cursor, *plan, now_ms) for plan in plans]

        return self._retry_resized(read)

    async def append_log(self, entries: Sequence[LogEntry]) -> None:
        """Write every entry in one write txn (atomic as a whole), in a worker thread."""
        self._check_open()
        if self.readonly:
            raise StoreError(f"embedded store {self.path!r} was opened readonly")
        now_ms = time.time_ns() // 1_000_000
        items: list[tuple[bytes, bytes]] = []
        for entry in entries:  # Validate everything before writing anything.
            check_entry(entry)
            prefix = self._log_prefix(entry.dataset, entry.key, len(entry.id))
            expires_ms = 0 if entry.ttl_s is None else now_ms + entry.ttl_s * 1000
            items.append((
                prefix + _U64.pack(entry.ts_ms) + entry.id,
                _U64.pack(expires_ms) + entry.payload,
            ))  # fmt: skip
        if not items:
            return
        async with self._write_lock:
            self._check_open()
            # _write sorts stably by key: of two entries of one identity the later wins.
            await asyncio.to_thread(self._retry_resized, lambda: self._write(items, set()))

    # -- writes -------------------------------------------------------------------

    async def multi_put(self, rows: Sequence[Row]) -> None:
        """Write all rows in one write txn, in a worker thread (the commit fsyncs)."""
        self._check_open()
        if self.readonly:
            raise StoreError(f"embedded store {self.path!r} was opened readonly")
        # Encode on the loop so a bad row raises before anything is written.
        now_ms = time.time_ns() // 1_000_000
        items: list[tuple[bytes, bytes]] = []
        prefixes: set[bytes] = set()
        for row in rows:
            if type(row.event_ms) is not int or not _INT64_MIN <= row.event_ms <= _INT64_MAX:
                raise ValueError(f"event_ms {row.event_ms!r} of dataset {row.dataset!r}: not int64")
            prefix = self._entity_prefix(row.dataset, row.key)
            expires_ms = 0 if row.ttl_s is None else now_ms + int(row.ttl_s * 1000)
            items.append((prefix + _inverted(row.event_ms), _U64.pack(expires_ms) + row.value))
            prefixes.add(prefix)
        if not items:
            return
        async with self._write_lock:
            self._check_open()
            await asyncio.to_thread(self._retry_resized, lambda: self._write(items, prefixes))

    def _write(self, items: list[tuple[bytes, bytes]], prefixes: set[bytes]) -> None:
        # Sorted puts touch each leaf page once. The sort is stable and by key only,
        # so of two rows for one (dataset, key, event_ms) the later one wins: the
        # "replace that version" rule holds inside a batch too.
        items.sort(key=_stored_key)
        with self._env.begin(write=True) as txn:
            cursor = txn.cursor()
            for stored_key, stored_value in items:
                cursor.put(stored_key, stored_value)
            if self.max_versions is not None:
                for prefix in prefixes:
                    self._trim(cursor, prefix, self.max_versions)

    @staticmethod
    def _trim(cursor: Any, prefix: bytes, keep: int) -> None:
        """Delete all but the `keep` newest versions of one entity key."""
        if not cursor.set_range(prefix):
            return
        size = len(prefix) + 8
        seen = 0
        while True:
            stored_key = cursor.key()
            if len(stored_key) != size or not stored_key.startswith(prefix):
                return
            seen += 1
            if seen > keep:
                # delete() moves the cursor to the next item; stop when none is left.
                if not cursor.delete():
                    return
                if not cursor.key():
                    return
            elif not cursor.next():
                return

    async def purge_expired(self) -> int:
        """Delete every expired version and log entry; returns how many were deleted."""
        self._check_open()
        if self.readonly:
            raise StoreError(f"embedded store {self.path!r} was opened readonly")
        async with self._write_lock:
            self._check_open()
            return await asyncio.to_thread(self._retry_resized, self._purge)

    def _purge(self) -> int:
        now_ms = time.time_ns() // 1_000_000
        deleted = 0
        with self._env.begin(write=True) as txn:
            cursor = txn.cursor()
            if not cursor.first():
                return 0
            while True:
                expires_ms = _U64.unpack_from(cursor.value())[0]
                if expires_ms != 0 and expires_ms <= now_ms:
                    deleted += 1
                    if not cursor.delete() or not cursor.key():
                        break
                elif not cursor.next():
                    break
        return deleted

    # -- lifecycle ----------------------------------------------------------------

    async def ping(self) -> None:
        """Check the environment can be read; raises StoreError when it cannot."""
        self._check_open()
        self._retry_resized(lambda: self._env.begin().abort())

    async def close(self) -> None:
        """Wait for the write in flight, then close the environment (idempotent)."""
        if self._closed:
            return
        async with self._write_lock:
            self._closed = True
            self._env.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"embedded store {self.path!r} is closed")

    def _retry_resized(self, operation: Callable[[], _T]) -> _T:
        """Run `operation`, adopting a map grown by another process; errors -> StoreError."""
        try:
            try:
                return operation()
            except lmdb.MapResizedError:
                # Another process grew the map past ours: adopt its size and retry once.
                self._env.set_mapsize(0)
                return operation()
        except lmdb.MapFullError as exc:
            raise StoreError(
                f"embedded store {self.path!r} is full: raise map_size (map_size_mb in the URL)"
            ) from exc
        except lmdb.Error as exc:
            raise StoreError(f"embedded store {self.path!r}: {exc}") from exc
