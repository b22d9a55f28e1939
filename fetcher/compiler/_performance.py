"""Stage 5, performance: what one fetch costs, per join and per aggregating group-by.

Per join: the stores a request touches (fetched concurrently: it waits for the slowest),
the lookups per entity (one per join part), the features per vector. Per group-by with
windowed aggregations: the tiles a fetch reads per entity for each window (window / tile).
Each number above its limit (`--max-stores`, `--max-lookups`, `--max-features`,
`--max-tiles`) is a warning, an error under --strict. The numbers go into the --json report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fetcher.compiler._model import GroupModel, JoinModel
from fetcher.compiler._problems import Problem, ProblemSink, Stage
from fetcher.compiler._refs import References
from fetcher.compiler._types import parse_duration


@dataclass(frozen=True, slots=True)
class Limits:
    """Stage 5's warning limits (the CLI flags)."""

    stores: int = 3
    lookups: int = 8
    features: int = 500
    tiles: int = 400


@dataclass(frozen=True, slots=True)
class PerformanceResult:
    """The numbers (as the --json report prints them) and the warnings."""

    numbers: dict[str, Any]
    problems: list[Problem]


def _sink(model: GroupModel | JoinModel) -> ProblemSink:
    d = model.definition
    return ProblemSink(Stage.PERFORMANCE, d.file, d.line, d.name)


def _windows(g: GroupModel) -> list[tuple[int, str, str, int]]:
    """(aggregation index, window, tile, tiles read) of each bounded window of a group-by."""
    out: list[tuple[int, str, str, int]] = []
    features = iter(g.features)
    for i, agg in enumerate(g.obj.aggregations or ()):
        for _ in agg.windows if agg.windows is not None else (None,):
            f = next(features)
            window_s = parse_duration(f.window)
            tile_s = parse_duration(f.tile)
            if f.window is not None and f.tile is not None and window_s and tile_s:
                out.append((i, f.window, f.tile, window_s // tile_s))
    return out


def _group(g: GroupModel, limits: Limits, sink: ProblemSink) -> dict[str, Any]:
    per_window: dict[str, int] = {}
    warned: set[tuple[int, str]] = set()
    for i, window, tile, tiles in _windows(g):
        per_window[window] = max(per_window.get(window, 0), tiles)
        if tiles > limits.tiles and (i, window) not in warned:
            warned.add((i, window))
            sink.warn(f"aggregations[{i}].windows", f"window {window} reads {tiles} tiles of "
                      f"{tile} per entity at fetch, above --max-tiles {limits.tiles}",
                      'set a larger tile (e.g. tile="1h"), shorten the window, or raise '
                      "--max-tiles")
    distinct = {(window, tile): tiles for _, window, tile, tiles in _windows(g)}
    return {"tiles_per_window": per_window, "tiles_read": sum(distinct.values())}


def _join(j: JoinModel, groups: Mapping[str, GroupModel], refs: References,
          tiles: Mapping[str, int], limits: Limits, sink: ProblemSink) -> dict[str, Any]:
    parts = [groups[t.name] for p in j.parts
             if (t := refs.resolve(p.group_by, "group_by")) is not None]
    stores = sorted({g.obj.store for g in parts})
    features = sum(len(g.features) for g in parts) + len(j.derivations)
    if len(stores) > limits.stores:
        sink.warn("right_parts", f"a request reads {len(stores)} stores ({', '.join(stores)}), "
                  f"above --max-stores {limits.stores}: it waits for the slowest",
                  "keep the join's group-bys in fewer stores, split the join, or raise "
                  "--max-stores")
    if len(parts) > limits.lookups:
        sink.warn("right_parts", f"{len(parts)} lookups per entity (one per join part), above "
                  f"--max-lookups {limits.lookups}", "merge group-bys with the same keys, "
                  "split the join, or raise --max-lookups")
    if features > limits.features:
        sink.warn("right_parts", f"{features} features per vector, above --max-features "
                  f"{limits.features}", "split the join by use, drop features no model reads, "
                  "or raise --max-features")
    return {
        "stores": stores,
        "lookups_per_entity": len(parts),
        "features_per_vector": features,
        "tiles_read": sum(tiles.get(g.name, 0) for g in parts),
    }


def check_performance(groups: Mapping[str, GroupModel], joins: Mapping[str, JoinModel],
                      refs: References, limits: Limits) -> PerformanceResult:
    """Run stage 5 over every join and every group-by with aggregations."""
    problems: list[Problem] = []
    numbers: dict[str, Any] = {"limits": {"stores": limits.stores, "lookups": limits.lookups,
                                          "features": limits.features, "tiles": limits.tiles},
                               "group_bys": {}, "joins": {}}
    for name in sorted(groups):
        g = groups[name]
        if g.aggregated:
            sink = _sink(g)
            numbers["group_bys"][name] = _group(g, limits, sink)
            problems.extend(sink.items)
    tiles = {n: v["tiles_read"] for n, v in numbers["group_bys"].items()}
    for name in sorted(joins):
        sink = _sink(joins[name])
        numbers["joins"][name] = _join(joins[name], groups, refs, tiles, limits, sink)
        problems.extend(sink.items)
    return PerformanceResult(numbers, problems)
