"""The writers of one machine: `fetcher load` reads CSV, JSONL or Parquet files, checks each
row against its group's schema, encodes it with the codec and writes it through a store.

Imports the codec, catalog, config and kvstores layers; nothing of the serving path.
"""

from fetcher.load._cli import run_load
from fetcher.load._event_rows import EventPreparer, PreparedEvent, content_id, event_id
from fetcher.load._events import (
    EventLoadReport,
    EventRejected,
    EventWriter,
    PushEvent,
    PushResult,
    format_event_report,
    load_event_files,
    run_load_events,
)
from fetcher.load._rows import RowPreparer
from fetcher.load._values import RowRejected
from fetcher.load._writer import BatchWriter, LoadReport, load_file

__all__ = [
    "BatchWriter",
    "EventLoadReport",
    "EventPreparer",
    "EventRejected",
    "EventWriter",
    "LoadReport",
    "PreparedEvent",
    "PushEvent",
    "PushResult",
    "RowPreparer",
    "RowRejected",
    "content_id",
    "event_id",
    "format_event_report",
    "load_event_files",
    "load_file",
    "run_load",
    "run_load_events",
]
