"""Where logged records go: the LogSink contract (files today; a Kafka topic can follow)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from fetcher.featurelog._schema import LogSchema


@dataclass(frozen=True, slots=True)
class LogBatch:
    """Records of one logged schema, as one Arrow record batch of `schema.arrow`."""

    schema: LogSchema
    records: pa.RecordBatch


class LogSink(Protocol):
    """A destination of logged records; every method runs in the log's writer thread.

    A sink may block (disk, network): the request path never waits for it, the bounded
    queue in front of it drops instead. A Kafka sink implements the same three methods:
    `write` produces each record (keyed by its entity key bytes, the value encoded with
    the batch's schema and tagged with `schema.hash`), `tick` polls/flushes the producer,
    `close` flushes and closes it.
    """

    def write(self, batch: LogBatch) -> None:
        """Take the records of `batch` (raising OSError when they cannot be kept)."""
        ...

    def tick(self) -> None:
        """Called at least every few seconds, with or without records: time-based work."""
        ...

    def close(self) -> None:
        """Make everything written durable and visible; nothing is written after."""
        ...
