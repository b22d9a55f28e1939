"""The `fetcher load` command: settings + catalog + store around fetcher.load._writer.load_file.

Exit codes: 0 every row of every file was written; 1 rows were rejected or a file
could not be loaded; 2 nothing could start (catalog, unknown group, an aggregation group,
store).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from fetcher.catalog import CatalogError, load_catalog
from fetcher.config import Settings
from fetcher.load._writer import (
    LoadError,
    LoadProgress,
    LoadReport,
    format_progress,
    format_report,
    load_file,
)
from kvstores import StoreError, open_store

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_SETUP = 2


class LoadSetupError(Exception):
    """The load cannot start: unknown group, bad catalog, store that cannot be opened."""


async def load_files(
    settings: Settings,
    group_name: str,
    paths: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 1000,
    event_time_column: str = "event_time",
    ignore_unknown_columns: bool = False,
    progress: Callable[[LoadProgress], None] | None = None,
    progress_interval_s: float = 0.5,
    on_file_error: Callable[[str, LoadError], None] | None = None,
) -> list[LoadReport]:
    """Load `paths` into `group_name`'s store, one after the other; returns one report per file.

    A file that cannot be loaded as a whole (LoadError) is passed to `on_file_error`
    and skipped (re-raised when no callback is given); StoreError stops everything.
    """
    try:
        catalog = load_catalog(settings.server.config_dir, settings.stores.keys())
    except CatalogError as exc:
        raise LoadSetupError(str(exc)) from exc
    group = catalog.groups.get(group_name)
    if group is None:
        known = ", ".join(sorted(catalog.groups)) or "(none)"
        raise LoadSetupError(
            f"unknown group {group_name!r} in {settings.server.config_dir}; known: {known}"
        )
    if group.aggregation is not None:
        # Its features are computed from a log of events, not read from rows.
        raise LoadSetupError(
            f"group {group_name!r} is an aggregation group: load its events with "
            "`fetcher load --events`"
        )
    conf = settings.stores[group.store]
    try:
        store = open_store(conf.url, timeout_s=conf.timeout_ms / 1000)
    except (StoreError, ValueError) as exc:
        raise LoadSetupError(f"store {conf.name!r}: {exc}") from exc
    reports: list[LoadReport] = []
    try:
        try:
            # Stores that need a keyspace or tables (Cassandra, DynamoDB) create them here.
            await store.create()
        except StoreError as exc:
            raise LoadSetupError(f"store {conf.name!r}: cannot create its tables: {exc}") from exc
        for path in paths:
            try:
                report = await load_file(
                    path,
                    group,
                    catalog.codecs[group.name],
                    store,
                    batch_size=batch_size,
                    event_time_column=event_time_column,
                    ignore_unknown_columns=ignore_unknown_columns,
                    progress=progress,
                    progress_interval_s=progress_interval_s,
                )
            except LoadError as exc:
                if on_file_error is None:
                    raise
                on_file_error(os.fspath(path), exc)
                continue
            reports.append(report)
    finally:
        await store.close()
    return reports


def _progress_printer(stream: TextIO) -> Callable[[LoadProgress], None]:
    # On a terminal one line is rewritten in place; in a log each update is its own line.
    tty = stream.isatty()

    def show(progress: LoadProgress) -> None:
        line = format_progress(progress)
        if tty:
            stream.write("\r" + line + "\x1b[K")
        else:
            stream.write(line + "\n")
        stream.flush()

    return show


async def run_load(settings: Settings, args: argparse.Namespace) -> int:
    """`fetcher load --group G FILE...`: progress on stderr, summary table on stdout."""
    err = sys.stderr
    failed: list[str] = []

    def file_error(path: str, exc: LoadError) -> None:
        failed.append(path)
        err.write(f"\nerror: {exc}\n")

    try:
        reports = await load_files(
            settings,
            args.group,
            args.files,
            batch_size=args.batch_size,
            event_time_column=args.event_time_column,
            ignore_unknown_columns=args.ignore_unknown_columns,
            progress=_progress_printer(err),
            progress_interval_s=0.5 if err.isatty() else 5.0,
            on_file_error=file_error,
        )
    except LoadSetupError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_SETUP
    except StoreError as exc:
        err.write(f"\nerror: the store failed, the load stopped: {exc}\n")
        return EXIT_SETUP
    if err.isatty():
        err.write("\n")
    if reports:
        print(format_report(reports))
    if failed or any(not r.ok for r in reports):
        return EXIT_REJECTED
    return EXIT_OK
