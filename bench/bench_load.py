"""Throughput of `fetcher load`: demo-shaped user_profile rows into a fresh embedded store.

Run: .venv/bin/python bench/bench_load.py [rows] [store-url]
(default 50,000 rows; store default: a temporary embedded store, fsync on commit).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from fetcher.catalog._loader import load_catalog
from fetcher.demo._data import generate_demo_rows
from fetcher.demo._files import WRITERS
from fetcher.load._writer import format_report, load_file
from kvstores import open_store


async def main(rows: int, url: str | None) -> None:
    """Write the rows as CSV, JSONL and Parquet, then load each file and print the table."""
    catalog = load_catalog("config/demo")
    group, codec = catalog.groups["user_profile"], catalog.codecs["user_profile"]
    demo = generate_demo_rows(group, now_ms=time.time_ns() // 1_000_000, entities=rows)
    with tempfile.TemporaryDirectory() as tmp:
        reports = []
        for fmt, suffix in (("csv", ".csv"), ("jsonl", ".jsonl"), ("parquet", ".parquet")):
            path = Path(tmp) / f"user_profile{suffix}"
            WRITERS[fmt](path, group, demo)
            store = open_store(url or f"embedded://{tmp}/{fmt}.lmdb")
            try:
                reports.append(await load_file(path, group, codec, store))
            finally:
                await store.close()
        print(f"{len(demo):,} rows of user_profile ({len(group.features)} features)")
        print(format_report(reports))


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    asyncio.run(main(count, sys.argv[2] if len(sys.argv) > 2 else None))
