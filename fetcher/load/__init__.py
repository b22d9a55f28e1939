"""The writers of one machine: `fetcher load` reads CSV, JSONL or Parquet files, checks each
row against its group's schema, encodes it with the codec and writes it through a store.

Imports the codec, catalog, config and kvstores layers; nothing of the serving path.
"""

from fetcher.load._cli import run_load
from fetcher.load._event_checks import check_event_ms
from fetcher.load._event_rows import EventPreparer, PreparedEvent, content_id, event_id
from fetcher.load._events import (
    EventLoadReport,
    EventRejected,
    EventWriter,
    PushEvent,
    PushResult,
    format_event_report,
    load_event_files,
    reject_lines,
    run_load_events,
)
from fetcher.load._formats import FORMATS, LoadError
from fetcher.load._rows import RowPreparer
from fetcher.load._values import RowRejected, event_time_ms, key_converter
from fetcher.load._writer import BatchWriter, LoadReport, load_file

__all__ = [
    "FORMATS",
    "BatchWriter",
    "EventLoadReport",
    "EventPreparer",
    "EventRejected",
    "EventWriter",
    "LoadError",
    "LoadReport",
    "PreparedEvent",
    "PushEvent",
    "PushResult",
    "RowPreparer",
    "RowRejected",
    "check_event_ms",
    "content_id",
    "event_id",
    "event_time_ms",
    "format_event_report",
    "key_converter",
    "load_event_files",
    "load_file",
    "reject_lines",
    "run_load",
    "run_load_events",
]
