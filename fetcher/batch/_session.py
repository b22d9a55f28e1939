"""The SparkSession of a backfill, quiet but for its progress.

On a terminal Spark's own console progress bar shows each stage; in a log (stderr not a
terminal) a thread prints one line per running stage every few seconds instead. Spark's
JVM logs warnings and errors only (log4j2.properties beside this file).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")


def session_conf(master: str | None, conf: Mapping[str, str], *, tty: bool) -> dict[str, str]:
    """The Spark settings of a backfill: ours first, the user's `--conf` over them."""
    out = {
        # Event times of timestamp columns become epoch ms in UTC, whatever the machine's zone.
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "true" if tty else "false",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()}",
    }
    if master is not None and master.startswith("local"):
        # One machine: nothing listens beyond loopback.
        out["spark.driver.host"] = "127.0.0.1"
        out["spark.driver.bindAddress"] = "127.0.0.1"
    out.update(conf)
    return out


def build_session(app_name: str, master: str | None, conf: Mapping[str, str]) -> SparkSession:
    """A SparkSession for the backfill; `master` None: the one spark-submit gave."""
    from pyspark.sql import SparkSession

    if master is not None and master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # The workers run this interpreter (whose venv has the package), not `python3`.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    for key, value in session_conf(master, conf, tty=sys.stderr.isatty()).items():
        builder = builder.config(key, value)
    # py4j logs each connection it opens and closes at INFO: the gateway's chatter, not ours.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _stage_lines(sc: SparkContext) -> list[str]:
    tracker = sc.statusTracker()
    lines = []
    for stage_id in sorted(tracker.getActiveStageIds()):
        info = tracker.getStageInfo(stage_id)
        if info is None:
            continue
        lines.append(f"stage {stage_id} ({info.name}): {info.numCompletedTasks}/{info.numTasks} "
                     f"tasks done, {info.numActiveTasks} running, {info.numFailedTasks} failed")
    return lines


@contextmanager
def progress_lines(sc: SparkContext, stream: TextIO, interval_s: float = 5.0) -> Iterator[None]:
    """Print the running stages' progress every `interval_s` while the block runs (a log's
    view of Spark's progress bar); nothing when `stream` is a terminal (the bar shows)."""
    if stream.isatty():
        yield
        return
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(interval_s):
            for line in _stage_lines(sc):
                stream.write(f"backfill: {line}\n")
            stream.flush()

    thread = threading.Thread(target=report, name="backfill-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval_s + 5)
