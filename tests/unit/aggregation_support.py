"""A config directory with an aggregation group beside the demo's groups of stored rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo"
NAME = "user_transactions"
# The example of docs/configuration.md "Aggregation group".
GROUP: dict[str, Any] = {
    "name": NAME,
    "store": "main",
    "dataset": NAME,
    "keys": [{"name": "user_id", "type": "int64"}],
    "ttl_seconds": 1209600,
    "online": True,
    "aggregations": {
        "columns": [{"name": "amount", "type": "double"}],
        "operations": [
            {"column": "amount", "operation": "sum", "hop_seconds": 300, "span_seconds": 3600},
            {"column": "amount", "operation": "count", "hop_seconds": 3600,
             "span_seconds": 604800},
        ],
        "features": [
            {"name": "amount_sum_1h", "type": "double", "operation": 0, "window_seconds": 3600},
            {"name": "amount_count_7d", "type": "int64", "operation": 1,
             "window_seconds": 604800},
        ],
    },
}


def demo_with_aggregation_group(root: Path) -> Path:
    """config/demo copied to `root` with groups/user_transactions.json added."""
    shutil.copytree(DEMO, root)
    (root / "groups" / f"{NAME}.json").write_text(json.dumps(GROUP, indent=2), encoding="utf-8")
    return root
