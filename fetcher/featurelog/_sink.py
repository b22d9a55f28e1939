"""Where logged records go: the LogSink contract (rotating files, fetcher.featurelog._files,
or a Kafka topic, fetcher.featurelog._kafka; [log.features] sink picks one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from fetcher.featurelog._columns import expand
from fetcher.featurelog._schema import LogSchema


@dataclass(frozen=True, slots=True)
class LogBatch:
    """Records of one logged schema, as one Arrow record batch of `schema.raw_arrow` (each
    record's vector as the wire bytes served, not decoded)."""

    schema: LogSchema
    records: pa.RecordBatch

    def decoded(self) -> tuple[pa.Table | None, int]:
        """The records decoded (`schema.arrow`: a column per feature), and how many were left
        out as malformed: for a sink whose format is the decoded one (Kafka's Avro)."""
        return expand(self.schema, self.records)


class LogSink(Protocol):
    """A destination of logged records; every method runs in the log's writer thread.

    A sink may block (disk, network): the request path never waits for it, the bounded
    queue in front of it drops instead. The file sink writes the records as they come
    (vector bytes, decoded when read); the Kafka sink's `write` decodes them and produces
    each record (keyed by its entity key bytes, the value Avro binary of the batch's
    schema, tagged with `schema.hash` in a header), `tick` serves the producer's callbacks, `close`
    flushes it within a bound.
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
