"""The feature log: what feature services served, sampled by entity key, written off the
request path to rotating Parquet files, and read back as training data (`fetcher logs
read`). docs/operations.md, "Feature log".

Beside the api layer: the server builds a FeatureLog and hands it to the servicer, which
calls `served` once per answered request. Imports the catalog, engine, codec, config and
metrics layers, and the protos (it decodes the vectors the server sent).
"""

from fetcher.featurelog._columns import LogColumns, LogRow, columns_batch, record_batch
from fetcher.featurelog._files import ClosedFile, FileSink, closed_files, service_dir
from fetcher.featurelog._log import FeatureLog
from fetcher.featurelog._read import LogReadError, ReadSummary, read_logs
from fetcher.featurelog._sampling import BUCKETS, Sampler, sample_bucket, sample_threshold
from fetcher.featurelog._schema import LogSchema, log_schema, service_descriptor
from fetcher.featurelog._sink import LogBatch, LogSink

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
    "closed_files",
    "columns_batch",
    "log_schema",
    "read_logs",
    "record_batch",
    "sample_bucket",
    "sample_threshold",
    "service_descriptor",
    "service_dir",
]
