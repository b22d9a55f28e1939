"""Two versions of the fetcher side by side under load: the before/after of a speed change.

    .venv/bin/python -m bench.ab --refs 1bb1c47 HEAD [--seconds 5 --runs 3]

Exports `fetcher/`, `kvstores/` and `bench/config/` of each git ref (`WORKTREE`: the
files as they are now) into build/bench-ab/<ref>, starts one `fetcher serve --workers 1`
per ref from its own tree on the bench's own Redis (data loaded once with the current
`fetcher load`: the stored layout must be the same in both refs), checks both answer
every bench value, then measures every scenario on each ref in turn, `--runs` rounds
interleaved (ref A, ref B, ref A, ...), servers pinned to core 0 and the load client
(ghz, or bench/grpc_load.py in the "raw client" scenarios) to core 1 as in `make bench`.
Prints medians and the B/A ratio per scenario, of requests/s and of the server's CPU
per request (user + system time of the server process over the run, /proc): on a
shared machine the CPU per request moves much less with other load than requests/s.
L1 off (every row from Redis) unless `--l1-warm`. Redis shares core 0: its CPU is not
in the server's.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from bench import checks, loadgen, prereqs
from bench.data import FIRST_USER, DataSet, fetcher_request_json, request_users, write_json
from bench.lab import PORTS, ROOT, Cores, Lab
from bench.loadgen import Measurement
from bench.procs import Proc, children, cpu_s
from bench.protoset import write_descriptor_set
from bench.report import SCENARIOS, Scenario
from fetcher.v1 import feature_service_pb2 as pb

EXPORTED = ("fetcher", "kvstores", "bench/config")


def export(ref: str, dest: Path) -> Path:
    """The fetcher's packages and the bench config of `ref` in `dest` (fresh)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    if ref == "WORKTREE":
        for path in EXPORTED:
            shutil.copytree(ROOT / path, dest / path, ignore=shutil.ignore_patterns("__pycache__"))
        return dest
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, *EXPORTED],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


class AbLab(Lab):
    """A Lab that starts a fetcher from an exported tree."""

    def start_tree(self, name: str, port: int, tree: Path, *, l1_cold: bool) -> Proc:
        """`fetcher serve` run with the tree as sys.path[0], so its packages are imported."""
        argv = [
            str(self.python), "-c", "import sys; from fetcher.cli import main; sys.exit(main())",
            "serve",
            "--settings", str(tree / "bench" / "config" / "bench.toml"), "--workers", "1",
        ]  # fmt: skip
        return self._start(
            name, argv, port, cpus=self.cores.server,
            env=self.fetcher_env(port, l1_cold=l1_cold), cwd=tree,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.ab")
    parser.add_argument("--refs", nargs=2, metavar=("A", "B"), required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--base-port", type=int, default=6460)
    parser.add_argument("--l1-warm", action="store_true")
    parser.add_argument("--only", default="", help="only the scenarios whose name has this")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench-ab")
    args = parser.parse_args(argv)
    scenarios = [s for s in SCENARIOS if args.only in s.name]
    if not scenarios:
        parser.error(f"--only {args.only!r}: no scenario has it in its name")

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = DataSet(args.users, (time.time_ns() // 1_000_000 - 3_600_000) // 1000 * 1000)
    lab = AbLab(out, args.base_port, data, Cores.detect())
    ghz = prereqs.ghz_path()
    protoset = write_descriptor_set(pb.DESCRIPTOR, out / "fetcher.protoset")
    results: dict[tuple[str, str], list[Measurement]] = {}
    cpu_us: dict[tuple[str, str], list[float]] = {}  # server CPU µs per request
    try:
        lab.start_redis()
        lab.load_fetcher_rows()
        servers: dict[str, int] = {}
        pids: dict[str, list[int]] = {}
        for i, ref in enumerate(args.refs):
            tree = export(ref, out / "trees" / f"{i}-{ref.replace('/', '_')}")
            port = args.base_port + len(PORTS) + i
            proc = lab.start_tree(f"ab{i}", port, tree, l1_cold=not args.l1_warm)
            pids[ref] = [proc.pid, *children(proc.pid)]
            sample = [FIRST_USER + j * 7 % data.users for j in range(min(50, data.users))]
            checks.check_fetcher_api(f"fetcher {ref}", f"127.0.0.1:{port}", sample, data.event_ms)
            servers[ref] = port
        files = {}
        for s in scenarios:
            if s.entities in files:
                continue
            requests = request_users(
                data, data.users // s.entities * (1 if s.entities == 1 else 10),
                s.entities, seed=s.entities,
            )  # fmt: skip
            files[s.entities] = write_json(
                out / f"requests-{s.entities}.json", [fetcher_request_json(r) for r in requests]
            )
        if args.l1_warm:
            for port in servers.values():  # every user read once: L1 holds them all
                warmed: set[int] = set()
                for s in scenarios:  # one scenario per request file
                    if s.entities not in warmed:
                        warmed.add(s.entities)
                        _load(ghz, port, protoset, files[s.entities], s, 2.0, lab)
        for run in range(args.runs):
            for s in scenarios:
                for ref, port in servers.items():
                    before = sum(map(cpu_s, pids[ref]))
                    m = _load(ghz, port, protoset, files[s.entities], s, args.seconds, lab)
                    # The load tools warm up and stop inside their run: a few requests'
                    # CPU around the measured window is counted, the same for both refs.
                    per_request = (sum(map(cpu_s, pids[ref])) - before) / max(1, m.requests) * 1e6
                    results.setdefault((s.name, ref), []).append(m)
                    cpu_us.setdefault((s.name, ref), []).append(per_request)
                    print(f"ab: run {run + 1} {s.name} {ref}: {m.rps:,.0f} req/s "
                          f"p50 {m.p50_ms:.2f} ms, {per_request:,.0f} µs CPU/req, "
                          f"{m.errors} errors", flush=True)  # fmt: skip
    finally:
        lab.close()
    a, b = args.refs
    print(f"\n| scenario | {a} req/s | {b} req/s | {b}/{a} | {a} p50 ms | {b} p50 ms "
          f"| {a} CPU µs/req | {b} CPU µs/req | {b}/{a} CPU |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in scenarios:
        ra = statistics.median(m.rps for m in results[(s.name, a)])
        rb = statistics.median(m.rps for m in results[(s.name, b)])
        pa = statistics.median(m.p50_ms for m in results[(s.name, a)])
        pb_ = statistics.median(m.p50_ms for m in results[(s.name, b)])
        ca = statistics.median(cpu_us[(s.name, a)])
        cb = statistics.median(cpu_us[(s.name, b)])
        print(f"| {s.name} | {ra:,.0f} | {rb:,.0f} | {rb / ra:.2f} | {pa:.2f} | {pb_:.2f} "
              f"| {ca:,.0f} | {cb:,.0f} | {cb / ca:.2f} |")  # fmt: skip
    return 0


def _load(
    ghz: Path, port: int, protoset: Path, data_file: Path, s: Scenario, seconds: float, lab: Lab
) -> Measurement:
    method = "GetFeatures" if s.entities == 1 else "GetBatchFeatures"
    return loadgen.grpc_load(
        s.client, ghz, lab.python, f"127.0.0.1:{port}", protoset,
        f"fetcher.v1.FeatureService.{method}", data_file,
        concurrency=s.concurrency, seconds=seconds, cpus=lab.cores.load,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
