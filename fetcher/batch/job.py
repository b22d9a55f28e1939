"""The backfill as a Spark application: `spark-submit [options] fetcher/batch/job.py
--group G --source PATH_OR_TABLE --end DATE [--settings S]` (or `-m fetcher.batch.job`).

The master and the cluster's settings come from spark-submit; the arguments are those of
`fetcher backfill` (docs/batch.md). Every node runs the feature-fetcher package.
"""

import sys

from fetcher.batch import main

if __name__ == "__main__":
    sys.exit(main())
