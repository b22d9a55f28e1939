"""Redis CPU per aggregation-log read, by the read script of two revisions, for keys that
keep 1, 4 or 7 batch parts (37,000 bytes each) behind 10 events, with and without a
known part (docs/benchmarks.md, "The Redis read script with a known part").

    .venv/bin/python -m bench.bench_redis_log_read --redis-port 6390 --old-rev HEAD~1

Writes to database 14 of that redis-server and empties it before and after. Each sample
is `--reads` EVALSHA calls; the figure is Redis's own user + system CPU per read (INFO
cpu), median of `--rounds` alternating rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import subprocess
from pathlib import Path

import redis

from kvstores import redis_log

ROOT = Path(__file__).resolve().parents[1]
_TS = struct.Struct(">Q")
PART_BYTES = 37_000
DAY_MS = 86_400_000


def _script_of(rev: str) -> bytes:
    source = subprocess.run(["git", "show", f"{rev}:kvstores/redis_log.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    names: dict[str, object] = {}
    exec(compile(source, f"{rev}:kvstores/redis_log.py", "exec"), names)
    script = names["READ_LOG_SCRIPT"]
    assert isinstance(script, bytes)
    return script


def _member(ts: int, ident: bytes, payload: bytes) -> bytes:
    return _TS.pack(ts) + ident + b"\x00\x00" + payload


def _cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main() -> None:
    """Print Redis CPU per read for each case and script."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_redis_log_read")
    parser.add_argument("--redis-port", type=int, default=6390)
    parser.add_argument("--old-rev", default="HEAD~1", help="git revision of the 'old' script")
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = redis.Redis(port=args.redis_port, db=14)
    client.flushdb()
    shas = {"old": client.script_load(_script_of(args.old_rev)),
            "new": client.script_load(redis_log.READ_LOG_SCRIPT)}
    try:
        for parts in (1, 4, 7):
            key, base = f"bench:log:{parts}", 10**12
            for p in range(parts):
                client.zadd(key, {_member(base + p * DAY_MS, b"", os.urandom(PART_BYTES)):
                                  base + p * DAY_MS})
            newest = base + (parts - 1) * DAY_MS
            for e in range(10):
                ts = newest + 1000 + e
                client.zadd(key, {_member(ts, b"e%d" % e, b"\x01\x02" + os.urandom(20)): ts})
            for mode in ("cold", "known"):
                extra = [] if mode == "cold" else [_TS.pack(newest), b"%d" % PART_BYTES]
                samples: dict[str, list[float]] = {name: [] for name in shas}
                for _ in range(args.rounds):
                    for name, sha in shas.items():
                        before = _cpu(client)
                        for _ in range(args.reads):
                            client.evalsha(sha, 1, key, newest + 10**7, 0, 1000, *extra)
                        samples[name].append((_cpu(client) - before) / args.reads * 1e6)
                shown = ", ".join(f"{name} {statistics.median(v):.0f} µs"
                                  for name, v in samples.items())
                print(f"{parts} parts, {mode}: {shown}")
    finally:
        client.flushdb()


if __name__ == "__main__":
    main()
