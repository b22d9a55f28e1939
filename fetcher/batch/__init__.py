"""The batch writer on Apache Spark: `fetcher backfill` and the spark-submit job
(fetcher/batch/job.py) compute each key's features from event tables and write them from
the executors through fetcher.load's writers and kvstores (docs/batch.md).

pyspark (the `spark` extra) is imported only when a backfill runs: importing this package
costs nothing to a server.
"""

from fetcher.batch._cli import (
    DEFAULT_MASTER,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_SETUP,
    add_backfill_arguments,
    main,
    parse_end,
    plan_backfill,
    run_backfill,
)
from fetcher.batch._errors import BackfillArgumentError, BackfillSetupError
from fetcher.batch._job import BackfillReport, format_backfill_report, run_backfill_job
from fetcher.batch._partitions import JobSpec
from fetcher.batch._session import build_session, progress_lines, session_conf
from fetcher.batch._source import SOURCE_FORMATS, Source, read_rows, resolve_source, table_source

__all__ = [
    "DEFAULT_MASTER",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_SETUP",
    "SOURCE_FORMATS",
    "BackfillArgumentError",
    "BackfillReport",
    "BackfillSetupError",
    "JobSpec",
    "Source",
    "add_backfill_arguments",
    "build_session",
    "format_backfill_report",
    "main",
    "parse_end",
    "plan_backfill",
    "progress_lines",
    "read_rows",
    "resolve_source",
    "run_backfill",
    "run_backfill_job",
    "session_conf",
    "table_source",
]
