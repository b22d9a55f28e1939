"""Numbers the reliability tests measured, appended to build/reliability.jsonl.

docs/reliability.md quotes them; a test run leaves the latest ones for the next update.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

REPORT = Path(__file__).resolve().parents[2] / "build" / "reliability.jsonl"


def record(case: str, **numbers: Any) -> None:
    """Append one case's numbers (one JSON line) to the report."""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with open(REPORT, "a", encoding="utf-8") as out:
        out.write(json.dumps({"case": case, "at": int(time.time()), **numbers}) + "\n")
