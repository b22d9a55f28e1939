"""Medians, ratios and targets of a bench run, as a Markdown table and JSON."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.loadgen import Measurement

FEAST_GRPC = "feast gRPC"
FEAST_HTTP = "feast HTTP"
FETCHER_COLD = "fetcher L1 cold"
FETCHER_WARM = "fetcher L1 warm"
CEILING = "bare grpc.aio"
REDIS_FLOOR = "raw redis pipeline"
# This fetcher serving the Feast repo (feature_store.yaml + registry.db, the rows Feast
# wrote) with Feast's own APIs ([feast] settings), L1 off: every request reads Redis.
OURS_FEAST_GRPC = "fetcher Feast gRPC"
OURS_FEAST_HTTP = "fetcher Feast HTTP"


@dataclass(frozen=True, slots=True)
class Scenario:
    """Entities per request, concurrent requests in flight, and the gRPC load client.

    client "ghz" (what the issue asks for) or "raw" (bench/grpc_load.py: prebuilt
    request bytes, answers not decoded), for where ghz itself is the bottleneck. HTTP and
    the Redis floor have no gRPC client: they run in the "ghz" scenarios only.
    """

    name: str
    entities: int
    concurrency: int
    client: str = "ghz"


SCENARIOS = (
    Scenario("1 entity, c=1", 1, 1),
    Scenario("1 entity, c=16", 1, 16),
    Scenario("100 entities, c=4", 100, 4),
    Scenario("1 entity, c=16, raw client", 1, 16, client="raw"),
    Scenario("100 entities, c=4, raw client", 100, 4, client="raw"),
)


@dataclass(frozen=True, slots=True)
class Summary:
    """Medians over the runs of one system in one scenario."""

    rps: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    runs: int

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready fields."""
        return {
            "rps": self.rps, "rows_per_s": self.rows_per_s, "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms, "errors": self.errors, "runs": self.runs,
        }  # fmt: skip


def summarize(runs: Sequence[Measurement], entities: int) -> Summary:
    """Median of each metric over the runs; errors are summed (any is a finding)."""
    rps = statistics.median(m.rps for m in runs)
    return Summary(
        rps=rps,
        rows_per_s=rps * entities,
        p50_ms=statistics.median(m.p50_ms for m in runs),
        p99_ms=statistics.median(m.p99_ms for m in runs),
        errors=sum(m.errors for m in runs),
        runs=len(runs),
    )


def _ratio(value: float, base: float | None) -> str:
    if base is None or base <= 0:
        return "-"
    return f"{value / base:.1f}x"


def results_table(summaries: Mapping[str, Mapping[str, Summary]], systems: Sequence[str]) -> str:
    """One row per scenario and system: rates, latencies and req/s ratios to Feast."""
    lines = [
        "| scenario | system | req/s | entity rows/s | p50 ms | p99 ms | vs Feast gRPC | "
        "vs Feast HTTP | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario, by_system in summaries.items():
        grpc_base = by_system.get(FEAST_GRPC)
        http_base = by_system.get(FEAST_HTTP)
        for name in systems:
            s = by_system.get(name)
            if s is None:
                continue
            lines.append(
                f"| {scenario} | {name} | {s.rps:,.0f} | {s.rows_per_s:,.0f} | "
                f"{s.p50_ms:.2f} | {s.p99_ms:.2f} | "
                f"{_ratio(s.rps, grpc_base.rps if grpc_base else None)} | "
                f"{_ratio(s.rps, http_base.rps if http_base else None)} | {s.errors} |"
            )
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Target:
    """One target of the issue: what was measured against what, and whether it holds."""

    name: str
    measured: str
    met: bool | None  # None: could not be measured in this run

    def row(self) -> str:
        """A Markdown table row."""
        verdict = "pending" if self.met is None else ("met" if self.met else "MISSED")
        return f"| {self.name} | {self.measured} | {verdict} |"


def _get(
    summaries: Mapping[str, Mapping[str, Summary]], scenario: str, system: str
) -> Summary | None:
    return summaries.get(scenario, {}).get(system)


def evaluate_targets(
    summaries: Mapping[str, Mapping[str, Summary]],
    workers: Mapping[str, float] | None,
    rss_mb: float | None,
) -> list[Target]:
    """The issue's targets, judged on the medians of this run (fetcher L1 cold unless said)."""
    c1, c16, batch, c16_raw, batch_raw = (s.name for s in SCENARIOS)
    out: list[Target] = []

    def ratio_target(
        name: str,
        scenario: str,
        system: str,
        base_system: str,
        attr: str,
        want: float,
        higher: bool,
    ) -> None:
        s, base = _get(summaries, scenario, system), _get(summaries, scenario, base_system)
        if s is None or base is None:
            out.append(Target(name, f"{system} or {base_system} not measured", None))
            return
        value, base_value = getattr(s, attr), getattr(base, attr)
        ratio = value / base_value if base_value else 0.0
        met = ratio >= want if higher else ratio <= want
        out.append(Target(name, f"{value:,.2f} / {base_value:,.2f} = {ratio:.2f}", met))

    for feast in (FEAST_GRPC, FEAST_HTTP):
        for system in (FETCHER_COLD, FETCHER_WARM):
            ratio_target(
                f"{c16}: req/s >= 10x {feast} ({system})", c16, system, feast, "rps", 10.0, True
            )
    for ours, feast in ((OURS_FEAST_GRPC, FEAST_GRPC), (OURS_FEAST_HTTP, FEAST_HTTP)):
        ratio_target(f"{c16}: req/s >= 10x {feast} ({ours})", c16, ours, feast, "rps", 10.0,
                     True)
        ratio_target(f"{batch}: rows/s >= 10x {feast} ({ours})", batch, ours, feast,
                     "rows_per_s", 10.0, True)
    ratio_target(
        f"{c1}: p50 <= 1/4 of {FEAST_GRPC} ({FETCHER_COLD})",
        c1,
        FETCHER_COLD,
        FEAST_GRPC,
        "p50_ms",
        0.25,
        False,
    )
    for scenario in (batch, batch_raw):
        ratio_target(
            f"{scenario}: rows/s >= 10x {FEAST_GRPC} ({FETCHER_COLD})",
            scenario,
            FETCHER_COLD,
            FEAST_GRPC,
            "rows_per_s",
            10.0,
            True,
        )
    for scenario in (c16, c16_raw):
        ratio_target(
            f"{scenario}: {FETCHER_WARM} req/s >= 0.7x {CEILING}",
            scenario,
            FETCHER_WARM,
            CEILING,
            "rps",
            0.7,
            True,
        )
    if workers and workers.get("1") and workers.get("2"):
        ratio = workers["2"] / workers["1"]
        out.append(
            Target(
                "2 workers >= 1.7x 1 worker (req/s)",
                f"{workers['2']:,.0f} / {workers['1']:,.0f} = {ratio:.2f}",
                ratio >= 1.7,
            )
        )
    else:
        out.append(Target("2 workers >= 1.7x 1 worker (req/s)", "not measured", None))
    if rss_mb is None:
        out.append(Target("RSS per worker <= 150 MB, L1 at 100k entries", "not measured", None))
    else:
        out.append(
            Target(
                "RSS per worker <= 150 MB, L1 at 100k entries", f"{rss_mb:.0f} MB", rss_mb <= 150
            )
        )
    return out


def targets_table(targets: Sequence[Target]) -> str:
    """The targets as a Markdown table."""
    head = ["| target | measured | verdict |", "| --- | --- | --- |"]
    return "\n".join(head + [t.row() for t in targets])
