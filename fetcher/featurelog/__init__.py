"""The feature log: what feature services served, sampled by entity key, written off the
request path to rotating Parquet files or a Kafka topic, and read back as training data
(`fetcher logs read`). docs/operations.md, "Feature log".

Beside the api layer: the server builds a FeatureLog and hands it to the servicer, which
calls `served` once per answered request. Imports the catalog, engine, codec, config and
metrics layers, and the protos (it decodes the vectors the server sent).
"""

from typing import Any

from fetcher.featurelog._avro import avro_schema, avro_schema_json, schema_from_json
from fetcher.featurelog._avro_encode import encode_records
from fetcher.featurelog._columns import (
    LogColumns,
    LogRow,
    columns_batch,
    expand,
    raw_batch,
    record_batch,
)
from fetcher.featurelog._files import ClosedFile, FileSink, closed_files, service_dir
from fetcher.featurelog._log import FeatureLog
from fetcher.featurelog._read import (
    LogReadError,
    ReadSummary,
    file_schema,
    read_log_file,
    read_logs,
)
from fetcher.featurelog._sampling import BUCKETS, Sampler, sample_bucket, sample_threshold
from fetcher.featurelog._schema import LogSchema, log_schema, service_descriptor
from fetcher.featurelog._sink import LogBatch, LogSink
from fetcher.featurelog._sinks import open_sink


def read_topic(url: str, service: str, out: str, **options: Any) -> ReadSummary:
    """`fetcher logs read kafka://...` (fetcher.featurelog._kafka_read; imports the Kafka
    client only when called)."""
    from fetcher.featurelog._kafka_read import read_topic as read

    return read(url, service, out, **options)

__all__ = [
    "BUCKETS",
    "ClosedFile",
    "FeatureLog",
    "FileSink",
    "LogBatch",
    "LogColumns",
    "LogReadError",
    "LogRow",
    "LogSchema",
    "LogSink",
    "ReadSummary",
    "Sampler",
    "avro_schema",
    "avro_schema_json",
    "closed_files",
    "columns_batch",
    "encode_records",
    "expand",
    "file_schema",
    "log_schema",
    "open_sink",
    "raw_batch",
    "read_log_file",
    "read_logs",
    "read_topic",
    "record_batch",
    "sample_bucket",
    "sample_threshold",
    "schema_from_json",
    "service_descriptor",
    "service_dir",
]
