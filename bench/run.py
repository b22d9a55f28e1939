"""`make bench`: this fetcher and Feast side by side on the same data, one command.

    .venv/bin/python -m bench.run [--seconds 10] [--runs 3] [--no-feast] [--smoke]

Starts its own redis-server (port 6450 by default), loads 10,000 users x two groups
of 20 float64 features with `fetcher load` and with Feast's write_to_online_store,
checks every system's answers, then measures each scenario on every system (servers
pinned to core 0, load generators to core 1), three runs interleaved, and reports
medians to build/bench/results.md and results.json. `--smoke` is the CI mode: tiny
data, one short run, only the systems that need no Feast. Profiles, worker scaling
and RSS are part of the full run only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench import checks, loadgen, prereqs
from bench.data import (
    FIRST_USER,
    DataSet,
    feast_http_body,
    feast_request_json,
    fetcher_request_json,
    request_users,
    write_json,
)
from bench.lab import ROOT, Cores, Lab
from bench.loadgen import Measurement
from bench.procs import BenchError, Proc, children, rss_mb
from bench.profile import record, summarize, summary_markdown
from bench.protoset import write_descriptor_set
from bench.report import (
    CEILING,
    FEAST_GRPC,
    FEAST_HTTP,
    FETCHER_COLD,
    FETCHER_WARM,
    OURS_FEAST_GRPC,
    OURS_FEAST_HTTP,
    REDIS_FLOOR,
    SCENARIOS,
    Scenario,
    Summary,
    evaluate_targets,
    results_table,
    targets_table,
)
from bench.report import (
    summarize as summarize_runs,
)
from fetcher.v1 import feature_service_pb2 as pb

SYSTEM_ORDER = (FETCHER_COLD, FETCHER_WARM, CEILING, FEAST_GRPC, FEAST_HTTP, OURS_FEAST_GRPC,
                OURS_FEAST_HTTP, REDIS_FLOOR)
# --feast-only: Feast's servers and this fetcher's Feast endpoints, nothing else.
FEAST_SYSTEMS = (FEAST_GRPC, FEAST_HTTP, OURS_FEAST_GRPC, OURS_FEAST_HTTP)
FETCHER_SERVICE = "fetcher.v1.FeatureService"
# A system's load run in a scenario; None: the system is not measured in that scenario.
Runner = Callable[[Scenario, float], Measurement | None]


class Bench:
    """One run of the harness: set up, check, measure, report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.build: Path = args.out
        self.build.mkdir(parents=True, exist_ok=True)
        now_ms = time.time_ns() // 1_000_000
        # Rows an hour old: in the past for both systems, never stale (no max age).
        self.data = DataSet(args.users, (now_ms - 3_600_000) // 1000 * 1000)
        self.cores = Cores.detect()
        self.lab = Lab(self.build, args.base_port, self.data, self.cores)
        self.ghz = prereqs.ghz_path()
        self.runners: dict[str, Runner] = {}
        self.servers: dict[str, Proc] = {}
        self.feast_python: Path | None = None
        #: Systems whose answers were compared with the bench data, in check order.
        self.checked: list[str] = []
        self.load_before = _loadavg()

    # ----- set-up -------------------------------------------------------------------
    def _data_files(self) -> dict[tuple[str, int], Path]:
        """Per (kind, entities): the request sequence every system of that kind replays."""
        files: dict[tuple[str, int], Path] = {}
        count = max(self.data.users, 100)
        for entities in sorted({s.entities for s in SCENARIOS}):
            requests = request_users(
                self.data,
                count // entities * (1 if entities == 1 else 10),
                min(entities, self.data.users),
                seed=entities,
            )
            d = self.build / "requests"
            d.mkdir(exist_ok=True)
            files[("users", entities)] = write_json(d / f"users-{entities}.json", requests)
            files[("fetcher", entities)] = write_json(
                d / f"fetcher-{entities}.json", [fetcher_request_json(r) for r in requests]
            )
            files[("feast", entities)] = write_json(
                d / f"feast-{entities}.json", [feast_request_json(r) for r in requests]
            )
            bodies = d / f"feast-http-{entities}.txt"
            bodies.write_text("\n".join(json.dumps(feast_http_body(r)) for r in requests) + "\n")
            files[("http", entities)] = bodies
        return files

    def setup(self) -> None:
        """Redis, rows for both systems, servers started and checked."""
        lab = self.lab
        if self.args.feast:
            self.feast_python = prereqs.ensure_feast(self.build)
            self.wrk = prereqs.ensure_wrk()
        lab.start_redis()
        print(f"bench: loading {self.data.users:,} users with `fetcher load`", flush=True)
        lab.load_fetcher_rows()
        files = self._data_files()
        protoset = write_descriptor_set(pb.DESCRIPTOR, self.build / "fetcher.protoset")
        sample = [FIRST_USER + i * 7 % self.data.users for i in range(min(50, self.data.users))]
        checks.check_redis(lab.redis_url, sample, self.data)
        self.checked.append(REDIS_FLOOR)

        def fetcher_runner(target: str) -> Runner:
            def go(s: Scenario, seconds: float) -> Measurement:
                method = "GetFeatures" if s.entities == 1 else "GetBatchFeatures"
                return loadgen.grpc_load(
                    s.client,
                    self.ghz,
                    lab.python,
                    target,
                    protoset,
                    f"{FETCHER_SERVICE}.{method}",
                    files[("fetcher", s.entities)],
                    concurrency=s.concurrency,
                    seconds=seconds,
                    cpus=self.cores.load,
                )

            return go

        for system, name, cold in (
            (FETCHER_COLD, "fetcher_cold", True),
            (FETCHER_WARM, "fetcher_warm", False),
        ):
            self.servers[system] = lab.start_fetcher(name, l1_cold=cold)
            target = f"127.0.0.1:{lab.port(name)}"
            checks.check_fetcher_api(system, target, sample, self.data.event_ms)
            self.checked.append(system)
            self.runners[system] = fetcher_runner(target)
        warm = f"127.0.0.1:{lab.port('fetcher_warm')}"
        filled = checks.fill(warm, list(self.data.user_ids), [None])
        print(f"bench: L1 of '{FETCHER_WARM}' filled with {filled:,} entities", flush=True)

        self.servers[CEILING] = lab.start_ceiling()
        ceiling = f"127.0.0.1:{lab.port('ceiling')}"
        checks.check_fetcher_api(
            CEILING, ceiling, [FIRST_USER + i for i in range(10)], self.data.event_ms
        )
        self.checked.append(CEILING)
        self.runners[CEILING] = fetcher_runner(ceiling)

        self.runners[REDIS_FLOOR] = lambda s, seconds: None if s.client != "ghz" else (
            loadgen.redis_floor(
                lab.python,
                lab.redis_url,
                files[("users", s.entities)],
                concurrency=s.concurrency,
                seconds=seconds,
                cpus=self.cores.load,
            )
        )

        if self.feast_python is not None:
            self._setup_feast(files, sample)

    def _setup_feast(self, files: dict[tuple[str, int], Path], sample: list[int]) -> None:
        assert self.feast_python is not None
        lab = self.lab
        print("bench: Feast: apply + write_to_online_store", flush=True)
        repo = lab.setup_feast(self.feast_python)
        self.servers[FEAST_GRPC], self.servers[FEAST_HTTP] = lab.start_feast(
            self.feast_python, repo
        )
        grpc_target = f"127.0.0.1:{lab.port('feast_grpc')}"
        http_url = f"http://127.0.0.1:{lab.port('feast_http')}/get-online-features"
        from bench.procs import run as run_cmd

        run_cmd(
            [
                str(self.feast_python),
                "-m",
                "bench.feast_repo",
                "check",
                "--grpc",
                grpc_target,
                "--http",
                http_url,
                "--users",
                *map(str, sample),
            ],
            "Feast check",
            cwd=ROOT,
        )
        self.checked += [FEAST_GRPC, FEAST_HTTP]
        # This fetcher over the same repo and rows, answering Feast's own APIs; checked
        # by the same Feast client code that checks Feast's servers.
        self.servers[OURS_FEAST_GRPC] = lab.start_fetcher_feast(repo)
        ours_grpc = f"127.0.0.1:{lab.port('fetcher_feast')}"
        ours_http = f"http://127.0.0.1:{lab.port('fetcher_feast_http')}/get-online-features"
        run_cmd(
            [str(self.feast_python), "-m", "bench.feast_repo", "check", "--grpc", ours_grpc,
             "--http", ours_http, "--users", *map(str, sample)],
            "fetcher Feast API check",
            cwd=ROOT,
        )
        self.checked += [OURS_FEAST_GRPC, OURS_FEAST_HTTP]
        feast_protoset = self.build / "feast.protoset"

        def grpc_runner(target: str) -> Runner:
            def go(s: Scenario, seconds: float) -> Measurement:
                return loadgen.grpc_load(
                    s.client,
                    self.ghz,
                    lab.python,
                    target,
                    feast_protoset,
                    "GrpcFeatureServer.GetOnlineFeatures",
                    files[("feast", s.entities)],
                    concurrency=s.concurrency,
                    seconds=seconds,
                    cpus=self.cores.load,
                )

            return go

        def http_runner(url: str) -> Runner:
            def go(s: Scenario, seconds: float) -> Measurement | None:
                if s.client != "ghz":
                    return None  # no gRPC client to swap: measured in the ghz scenarios
                return loadgen.wrk(
                    self.wrk,
                    url,
                    files[("http", s.entities)],
                    concurrency=s.concurrency,
                    seconds=seconds,
                    cpus=self.cores.load,
                )

            return go

        self.runners[FEAST_GRPC] = grpc_runner(grpc_target)
        self.runners[FEAST_HTTP] = http_runner(http_url)
        self.runners[OURS_FEAST_GRPC] = grpc_runner(ours_grpc)
        self.runners[OURS_FEAST_HTTP] = http_runner(ours_http)

    # ----- measurement ---------------------------------------------------------------
    def measure(self) -> dict[str, dict[str, Summary]]:
        """Every scenario on every system, runs interleaved so drift hits all alike."""
        systems = [s for s in SYSTEM_ORDER if s in self.runners]
        if self.args.feast_only:
            systems = [s for s in systems if s in FEAST_SYSTEMS]
        raw: dict[str, dict[str, list[Measurement]]] = {s.name: {} for s in SCENARIOS}
        for run_index in range(self.args.runs):
            for scenario in SCENARIOS:
                for system in systems:
                    if run_index == 0 and self.args.warmup > 0:
                        self.runners[system](scenario, self.args.warmup)
                    m = self.runners[system](scenario, self.args.seconds)
                    if m is None:
                        continue
                    raw[scenario.name].setdefault(system, []).append(m)
                    flag = f"  ERRORS {m.errors}: {m.error_sample}" if m.errors else ""
                    print(
                        f"bench: run {run_index + 1}/{self.args.runs}  {scenario.name:<18} "
                        f"{system:<20} {m.rps:>9,.0f} req/s  p50 {m.p50_ms:7.2f} ms  "
                        f"p99 {m.p99_ms:7.2f} ms{flag}",
                        flush=True,
                    )
        self.raw = raw
        return {
            scenario.name: {
                system: summarize_runs(runs, scenario.entities)
                for system, runs in raw[scenario.name].items()
            }
            for scenario in SCENARIOS
        }

    def workers_scaling(self) -> dict[str, float]:
        """req/s of `--workers 1` and `--workers 2` (L1 cold, 1 entity, c=16), both cores."""
        out: dict[str, float] = {}
        scenario = SCENARIOS[1]
        protoset = self.build / "fetcher.protoset"
        data = self.build / "requests" / "fetcher-1.json"
        for workers in (1, 2):
            proc = self.lab.start_fetcher(
                "workers", l1_cold=True, workers=workers, cpus=self.cores.all
            )
            try:
                target = f"127.0.0.1:{self.lab.port('workers')}"
                time.sleep(2.0)  # every worker up and bound, not just the first
                checks.check_fetcher_api(
                    f"fetcher --workers {workers}", target, [FIRST_USER], self.data.event_ms
                )
                runs = [
                    loadgen.ghz(
                        self.ghz,
                        target,
                        protoset,
                        f"{FETCHER_SERVICE}.GetFeatures",
                        data,
                        concurrency=scenario.concurrency,
                        seconds=self.args.seconds,
                        cpus=self.cores.all,
                    ).rps
                    for _ in range(self.args.runs)
                ]
            finally:
                self.lab.stop(proc)
            out[str(workers)] = sorted(runs)[len(runs) // 2]
            print(
                f"bench: --workers {workers}: {out[str(workers)]:,.0f} req/s (median)", flush=True
            )
        return out

    def rss(self) -> dict[str, float]:
        """RSS of a worker before and after filling L1 with 100,000 group rows (40 features
        per entity: 50,000 entity vectors, read at 5 points in time of 10,000 users)."""
        proc = self.lab.start_fetcher("rss", l1_cold=False, workers=1)
        try:
            target = f"127.0.0.1:{self.lab.port('rss')}"
            checks.check_fetcher_api("fetcher (rss)", target, [FIRST_USER], self.data.event_ms)
            pids = children(proc.pid) or [proc.pid]
            before = max(rss_mb(p) for p in pids)
            ats: list[int | None] = [None, *(self.data.event_ms + k * 1000 for k in range(1, 5))]
            filled = checks.fill(target, list(self.data.user_ids), ats)
            after = max(rss_mb(p) for p in (children(proc.pid) or [proc.pid]))
        finally:
            self.lab.stop(proc)
        print(
            f"bench: RSS per worker {before:.0f} MB at start, {after:.0f} MB with L1 holding "
            f"{filled * 2:,} group rows",
            flush=True,
        )
        return {"start_mb": before, "filled_mb": after, "l1_entries": filled * 2}

    def profiles(self) -> list[dict[str, object]]:
        """py-spy flame graphs of the L1-cold fetcher: 1 entity c=16, 100 entities c=4."""
        py_spy = prereqs.ensure_py_spy(self.build)
        out_dir = ROOT / "docs" / "profiles"
        out_dir.mkdir(parents=True, exist_ok=True)
        server = self.servers[FETCHER_COLD]
        results: list[dict[str, object]] = []
        seconds = max(5, int(self.args.seconds))
        for scenario, slug in (
            (SCENARIOS[1], "fetcher-1-entity-l1-cold"),
            (SCENARIOS[2], "fetcher-100-entities-l1-cold"),
        ):
            load = threading.Thread(
                target=self.runners[FETCHER_COLD], args=(scenario, 2 * seconds + 8), daemon=True
            )
            load.start()
            time.sleep(2.0)
            svg = record(py_spy, server.pid, out_dir / f"{slug}.svg", seconds, fmt="flamegraph")
            raw = record(py_spy, server.pid, self.build / f"{slug}.txt", seconds, fmt="raw")
            load.join()
            summary = summarize(raw)
            results.append(
                {
                    "scenario": scenario.name,
                    "svg": str(svg.relative_to(ROOT)),
                    "summary": summary.to_dict(),
                    "markdown": summary_markdown(f"{scenario.name}, L1 cold", summary),
                }
            )
        return results


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _write_report(
    bench: Bench, summaries: dict[str, dict[str, Summary]], extras: dict[str, object]
) -> str:
    systems = [s for s in SYSTEM_ORDER if any(s in v for v in summaries.values())]
    workers = extras.get("workers")
    rss = extras.get("rss")
    targets = evaluate_targets(
        summaries,
        workers if isinstance(workers, dict) else None,
        rss["filled_mb"] if isinstance(rss, dict) else None,
    )
    info = prereqs.machine()
    a = bench.args
    lines = [
        f"# Bench results ({dt.datetime.now(dt.UTC).isoformat(timespec='seconds')})",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"kernel {info['kernel']}. Servers on CPU {bench.cores.server}, load on CPU "
        f"{bench.cores.load}. {a.users:,} users, {a.runs} run(s) of {a.seconds:g} s per "
        f"system and scenario; medians. Load average (1 min) {bench.load_before:.2f} before, "
        f"{_loadavg():.2f} after: the machine is shared, so compare within one run.",
        "",
        f"Answers checked against the bench data: {', '.join(bench.checked)}.",
        "",
        results_table(summaries, systems),
        "",
    ]
    if isinstance(workers, dict):
        lines += [
            f"Workers (L1 cold, 1 entity, c=16, servers and ghz on CPUs {bench.cores.all}): "
            + ", ".join(f"{k} -> {v:,.0f} req/s" for k, v in workers.items()),
            "",
        ]
    if isinstance(rss, dict):
        lines += [
            f"RSS per worker: {rss['start_mb']:.0f} MB at start, {rss['filled_mb']:.0f} MB "
            f"with L1 holding {rss['l1_entries']:,} group rows of 20 features",
            "",
        ]
    lines += ["## Targets", "", targets_table(targets), ""]
    for profile in extras.get("profiles") or []:  # type: ignore[attr-defined]
        lines += [profile["markdown"], f"Flame graph: {profile['svg']}", ""]
    text = "\n".join(lines)
    (bench.build / "results.md").write_text(text)
    payload = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "checked": bench.checked,
        "loadavg": {"before": bench.load_before, "after": _loadavg()},
        "args": {k: str(v) for k, v in vars(a).items()},
        "summaries": {sc: {sy: s.to_dict() for sy, s in v.items()} for sc, v in summaries.items()},
        "runs": {
            sc: {sy: [m.to_dict() for m in ms] for sy, ms in v.items()}
            for sc, v in bench.raw.items()
        },
        "targets": [{"name": t.name, "measured": t.measured, "met": t.met} for t in targets],
        **{k: v for k, v in extras.items()},
    }
    (bench.build / "results.json").write_text(json.dumps(payload, indent=2, default=str))
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; --smoke sets the CI defaults."""
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--smoke", action="store_true", help="CI mode: tiny, short, no Feast")
    p.add_argument("--users", type=int, help="users (default 10000; smoke 200)")
    p.add_argument("--seconds", type=float, help="seconds per run (default 10; smoke 1)")
    p.add_argument("--runs", type=int, help="runs per system and scenario (default 3; smoke 1)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up before run 1 (default 2)")
    p.add_argument("--no-feast", dest="feast", action="store_false", default=None)
    p.add_argument("--feast-only", action="store_true",
                   help="measure only Feast's servers and this fetcher's Feast endpoints")
    p.add_argument(
        "--no-extras",
        dest="extras",
        action="store_false",
        default=None,
        help="skip worker scaling, RSS and profiles",
    )
    p.add_argument("--base-port", type=int, default=6450, help="redis port; servers use +1..+9")
    p.add_argument("--out", type=Path, default=ROOT / "build" / "bench")
    args = p.parse_args(argv)
    smoke = args.smoke
    defaults = {
        "users": 200 if smoke else 10_000,
        "seconds": 1.0 if smoke else 10.0,
        "runs": 1 if smoke else 3,
        "warmup": 0.5 if smoke else 2.0,
        "feast": not smoke,
        "extras": not smoke,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the bench; exit 1 with the failing step's message on any error."""
    args = parse_args(argv)
    bench: Bench | None = None
    try:
        bench = Bench(args)
        bench.setup()
        summaries = bench.measure()
        extras: dict[str, object] = {}
        if args.extras:
            extras["profiles"] = bench.profiles()
            for proc in bench.servers.values():  # free the cores; the Redis stays
                bench.lab.stop(proc)
            extras["workers"] = bench.workers_scaling()
            extras["rss"] = bench.rss()
        text = _write_report(bench, summaries, extras)
    except BenchError as exc:
        print(f"bench: ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        if bench is not None:
            bench.lab.close()
    print("\n" + text)
    print(f"\nbench: wrote {args.out / 'results.md'} and {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
