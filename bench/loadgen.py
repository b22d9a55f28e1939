"""Load generators: ghz (gRPC), wrk (HTTP) and the Python loop over raw Redis pipelines.

Each runs as its own process pinned to the load core and returns a Measurement;
errors are counted, never hidden (the report marks any result that has them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.procs import BenchError, pinned, run

BENCH_DIR = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH_DIR / "lua" / "post_json.lua"
# ghz stops at the duration by closing the connection: calls in flight then fail with
# one of these, and a worker may start one more call before it sees the stop (seen: 5 of
# them at c=4, e.g. 1 Canceled + 4 Unavailable, which failed a CI smoke run). At most
# 2 x `concurrency` of them are an artefact of stopping, not errors.
_STOP_ERRORS = (
    "transport is closing",
    "connection is closing",
    "context canceled",
    "code = Canceled",
)


@dataclass(frozen=True, slots=True)
class Measurement:
    """One load run against one system: completed requests, errors and latencies."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    error_sample: str = ""

    @property
    def rps(self) -> float:
        """Successful requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields plus the derived rate."""
        return {**asdict(self), "rps": self.rps}


def ghz(
    ghz_bin: Path,
    target: str,
    protoset: Path,
    call: str,
    data_file: Path,
    *,
    concurrency: int,
    seconds: float,
    cpus: str | None,
) -> Measurement:
    """`ghz` on one HTTP/2 connection with `concurrency` workers for `seconds`."""
    argv = [
        str(ghz_bin), "--insecure", "--protoset", str(protoset), "--call", call,
        "-D", str(data_file), "-c", str(concurrency), "--connections", "1",
        "-z", f"{seconds}s", "-t", "10s", "--cpus", "1", "-O", "json", target,
    ]  # fmt: skip
    argv = pinned(argv, cpus)
    out = run(argv, f"ghz {call} on {target}", timeout_s=seconds + 60)
    try:
        report = json.loads(out)
    except json.JSONDecodeError as exc:
        raise BenchError(f"ghz printed no JSON for {call} on {target}: {out[:300]}") from exc
    codes: dict[str, int] = report.get("statusCodeDistribution") or {}
    ok = codes.get("OK", 0)
    errors_by_message: dict[str, int] = report.get("errorDistribution") or {}
    stop_errors = sum(
        n for msg, n in errors_by_message.items() if any(s in msg for s in _STOP_ERRORS)
    )
    other = sum(errors_by_message.values()) - min(stop_errors, 2 * concurrency)
    latencies = {
        int(p["percentage"]): p["latency"] for p in report.get("latencyDistribution") or []
    }
    if ok == 0 or 50 not in latencies:
        raise BenchError(f"ghz: no successful call of {call} on {target}: {errors_by_message}")
    return Measurement(
        requests=ok,
        errors=max(other, 0),
        seconds=report["total"] / 1e9,
        p50_ms=latencies[50] / 1e6,
        p99_ms=latencies[99] / 1e6,
        error_sample=next(iter(errors_by_message), "") if other > 0 else "",
    )


def grpc_raw(
    python: Path,
    target: str,
    protoset: Path,
    call: str,
    data_file: Path,
    *,
    concurrency: int,
    seconds: float,
    cpus: str | None,
) -> Measurement:
    """bench/grpc_load.py: the same requests as ghz, sent as bytes, answers not decoded."""
    argv = [
        str(python), "-m", "bench.grpc_load", "--target", target, "--protoset", str(protoset),
        "--call", call, "--data", str(data_file), "--concurrency", str(concurrency),
        "--seconds", str(seconds),
    ]  # fmt: skip
    argv = pinned(argv, cpus)
    out = run(argv, f"grpc_load {call} on {target}", cwd=BENCH_DIR.parent, timeout_s=seconds + 60)
    result = json.loads(out.strip().splitlines()[-1])
    return Measurement(**result)


def grpc_load(
    scenario_client: str,
    ghz_bin: Path,
    python: Path,
    target: str,
    protoset: Path,
    call: str,
    data_file: Path,
    *,
    concurrency: int,
    seconds: float,
    cpus: str | None,
) -> Measurement:
    """ghz or the raw-bytes client, as the scenario says."""
    if scenario_client == "raw":
        return grpc_raw(python, target, protoset, call, data_file,
                        concurrency=concurrency, seconds=seconds, cpus=cpus)  # fmt: skip
    return ghz(ghz_bin, target, protoset, call, data_file,
               concurrency=concurrency, seconds=seconds, cpus=cpus)  # fmt: skip


def wrk(
    wrk_bin: str, url: str, bodies: Path, *, concurrency: int, seconds: float, cpus: str | None
) -> Measurement:
    """`wrk` with one thread and `concurrency` keep-alive connections for `seconds`."""
    argv = [
        wrk_bin, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(WRK_SCRIPT), url, "--", str(bodies.resolve()),
    ]  # fmt: skip
    argv = pinned(argv, cpus)
    out = run(argv, f"wrk on {url}", timeout_s=seconds + 60)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise BenchError(f"wrk printed no result line for {url}:\n{out[-500:]}")
    result = json.loads(lines[-1])
    errors = int(result["errors"]) + int(result["status_errors"])
    ok = int(result["requests"]) - int(result["status_errors"])
    if ok <= 0:
        raise BenchError(f"wrk: no successful request to {url}: {result}")
    return Measurement(
        requests=ok,
        errors=errors,
        seconds=result["duration_us"] / 1e6,
        p50_ms=result["p50_us"] / 1e3,
        p99_ms=result["p99_us"] / 1e3,
        error_sample="non-2xx responses or socket errors" if errors else "",
    )


def redis_floor(
    python: Path,
    redis_url: str,
    data_file: Path,
    *,
    concurrency: int,
    seconds: float,
    cpus: str | None,
) -> Measurement:
    """bench/redis_floor.py: the raw pipelines the fetcher's Redis store sends."""
    argv = [
        str(python), "-m", "bench.redis_floor", "--url", redis_url, "--data", str(data_file),
        "--concurrency", str(concurrency), "--seconds", str(seconds),
    ]  # fmt: skip
    argv = pinned(argv, cpus)
    out = run(argv, "redis floor", cwd=BENCH_DIR.parent, timeout_s=seconds + 60)
    result = json.loads(out.strip().splitlines()[-1])
    return Measurement(
        requests=result["requests"],
        errors=result["errors"],
        seconds=result["seconds"],
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        error_sample=result.get("error_sample", ""),
    )
