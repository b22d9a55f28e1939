"""The bench harness in smoke mode: every system it measures answers correctly.

Runs `python -m bench.run --smoke` (tiny data, 1 s per system and scenario, no
Feast) on free ports with its own redis-server: the fetcher (L1 cold and warm), the
bare grpc.aio ceiling and the raw Redis floor, loaded with ghz. The harness compares
each system's answers with the bench data before measuring and counts errors while
measuring; this test checks both. Speed is never asserted.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = {"fetcher L1 cold", "fetcher L1 warm", "bare grpc.aio", "raw redis pipeline"}
SCENARIOS = {
    "1 entity, c=1", "1 entity, c=16", "100 entities, c=4",
    "1 entity, c=16, raw client", "100 entities, c=4, raw client",
}  # fmt: skip
# The raw-bytes gRPC client (bench/grpc_load.py) loads the gRPC systems only.
GRPC_SYSTEMS = {"fetcher L1 cold", "fetcher L1 warm", "bare grpc.aio"}


def _free_base_port(span: int = 8) -> int:
    """A base port with `span` free ports above it (redis + servers)."""
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(20_000, 40_000)
        free = True
        for port in range(base, base + span):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return base
    raise RuntimeError("no free block of ports for the bench smoke run")


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_bench_smoke(tmp_path: Path) -> None:
    ghz = ROOT / ".tools" / "bin" / "ghz"
    if not ghz.is_file():
        pytest.fail(f"{ghz} missing: run `make setup` (scripts/setup.sh installs ghz)")
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--base-port", str(_free_base_port()),
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"bench smoke failed:\n{output}"
    results = json.loads((out / "results.json").read_text())

    # Every system's answers were compared value by value with the bench data.
    assert set(results["checked"]) == SYSTEMS
    summaries = results["summaries"]
    assert set(summaries) == SCENARIOS
    for scenario, by_system in summaries.items():
        assert set(by_system) == (GRPC_SYSTEMS if "raw client" in scenario else SYSTEMS), scenario
        for system, summary in by_system.items():
            assert summary["errors"] == 0, (scenario, system, results["runs"][scenario][system])
            assert summary["rps"] > 0 and summary["p50_ms"] > 0, (scenario, system)
            entities = 100 if scenario.startswith("100") else 1
            assert summary["rows_per_s"] == pytest.approx(summary["rps"] * entities)
    assert (out / "results.md").read_text().count("| 1 entity, c=1 |") == len(SYSTEMS)
