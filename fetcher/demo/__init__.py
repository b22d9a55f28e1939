"""The demo data set: deterministic rows from the demo schemas, written to the embedded store
the way `fetcher load` writes them, and the same rows as CSV, JSONL and Parquet files.

Imports the load writers, the catalog and the settings; nothing of the serving path.
"""

from fetcher.demo._write import DemoError, write_demo, write_demo_files

__all__ = ["DemoError", "write_demo", "write_demo_files"]
