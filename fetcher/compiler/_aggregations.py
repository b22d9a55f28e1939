"""Stage 1 for aggregations: the operation fits the column, windows and tiles, output types.

Output features are `<column>_<operation>_<window>` (`amount_sum_7d`; `name=` replaces the
`<column>_<operation>` part), or
`<column>_<operation>` for an unbounded window. The tile (hop) of a window follows
Chronon: 5 minutes below 12 hours, 1 hour below 12 days, 1 day above (and unbounded).
"""

from __future__ import annotations

from collections.abc import Sequence

from fetcher.aggregation import K_OPERATIONS, default_hop_ms, unfit
from fetcher.aggregation import output_type as _output_type
from fetcher.compiler._model import FeatureModel
from fetcher.compiler._problems import ProblemSink
from fetcher.compiler._types import ColumnInfo, format_duration, parse_duration
from fetcher.definitions import Aggregation, Operation

_K_OPS = frozenset(op for op in Operation if op.value in K_OPERATIONS)


def default_tile(window_s: int | None) -> int:
    """Chronon's hop size in seconds for a window in seconds (fetcher.aggregation's rule)."""
    return default_hop_ms(None if window_s is None else window_s * 1000) // 1000


def output_type(op: Operation, column_type: str) -> str | None:
    """The output column type of `op` over a column (None: it has no feature type)."""
    return _output_type(op.value, column_type)


def aggregation_features(
    aggs: object, columns: dict[str, ColumnInfo], keys: Sequence[str], sink: ProblemSink,
    *, online: bool = False,
) -> tuple[list[FeatureModel], int | None]:
    """The output features of `aggs` and the longest bounded window (seconds).

    `online`: the group-by is served, so every output needs a feature type (no histogram).
    """
    if isinstance(aggs, str) or not isinstance(aggs, Sequence) or not aggs:
        sink.error("aggregations", f"{aggs!r:.60} is not a non-empty list of Aggregation",
                   "write [Aggregation(...), ...], or None for the selected columns as they are")
        return [], None
    features: list[FeatureModel] = []
    longest: int | None = None
    for i, agg in enumerate(aggs):
        where = f"aggregations[{i}]"
        if not isinstance(agg, Aggregation):
            sink.error(where, f"is {type(agg).__name__}, not an Aggregation",
                       "write Aggregation(column=..., operation=Operation....)")
            continue
        out, window = _one(agg, i, columns, keys, sink, online)
        features.extend(out)
        if window is not None:
            longest = max(longest or 0, window)
    return features, longest


def _one(
    agg: Aggregation, index: int, columns: dict[str, ColumnInfo], keys: Sequence[str],
    sink: ProblemSink, online: bool,
) -> tuple[list[FeatureModel], int | None]:
    where = f"aggregations[{index}]"
    before = len(sink.items)
    op = agg.operation
    if not isinstance(op, Operation):
        sink.error(f"{where}.operation", f"{op!r:.40} is not an Operation",
                   f"use one of Operation.{', Operation.'.join(o.name for o in Operation)}")
        return [], None
    column = columns.get(agg.column) if isinstance(agg.column, str) else None
    if column is None or agg.column in keys:
        what = "a key" if agg.column in keys else "not a selected column"
        sink.error(f"{where}.column", f"{agg.column!r:.40} is {what}",
                   f"aggregate one of {', '.join(c for c in columns if c not in keys) or '(none)'}")
    else:
        why = unfit(op.value, column.type)
        if why is not None:
            sink.error(f"{where}.operation", f"{why}; {agg.column!r} is {column.type}",
                       "pick an operation that fits the column (count fits any)")
    if op in _K_OPS:
        if not isinstance(agg.k, int) or isinstance(agg.k, bool) or agg.k <= 0:
            sink.error(f"{where}.k", f"{op.value} needs k > 0, got {agg.k!r:.20}",
                       "set k to the number of values to keep, e.g. k=5")
    elif agg.k is not None:
        sink.error(f"{where}.k", f"k is only for first_k, last_k, top_k, bottom_k, not {op.value}",
                   "remove k")
    if op is Operation.APPROX_PERCENTILE:
        ps = agg.percentiles
        if (
            isinstance(ps, str) or not isinstance(ps, Sequence) or not ps
            or not all(isinstance(p, int | float) and not isinstance(p, bool) and 0 <= p <= 1
                       for p in ps)
        ):
            sink.error(f"{where}.percentiles",
                       f"approx_percentile needs percentiles in [0, 1], got {ps!r:.40}",
                       "write e.g. percentiles=(0.5, 0.9, 0.99)")
    elif agg.percentiles is not None:
        sink.error(f"{where}.percentiles", f"percentiles are only for approx_percentile, "
                   f"not {op.value}", "remove percentiles")
    if agg.name is not None and (not isinstance(agg.name, str) or not agg.name):
        sink.error(f"{where}.name", f"{agg.name!r:.40} is not a feature name",
                   "write a name such as \"amount_total\", or None for <column>_<operation>")
    windows = _windows(agg.windows, where, sink)
    tile_s: int | None = None
    if agg.tile is not None:
        tile_s = parse_duration(agg.tile)
        if tile_s is None:
            sink.error(f"{where}.tile", f"{agg.tile!r:.20} is not a duration",
                       'write minutes, hours or days: "5m", "1h", "1d"')
        else:
            for text, seconds in windows:
                if seconds is not None and seconds % tile_s:
                    sink.error(f"{where}.tile", f"window {text} is not a whole number of "
                               f"{agg.tile} tiles", "pick a tile that divides every window")
    if len(sink.items) > before or column is None:
        return [], None
    kind = output_type(op, column.type)
    if kind is None and online:
        sink.error(f"{where}.operation", f"{op.value} outputs a map, which no feature type "
                   "holds: an online group-by cannot serve it",
                   "use top_k or approx_percentile for a servable summary, or set "
                   "online=False (then it is compiled into the metadata only)")
        return [], None
    if kind is None:
        sink.warn(f"{where}.operation", f"{op.value} outputs a map, which no feature type "
                  "holds: it is compiled into the metadata and can never be served",
                  "use top_k or approx_percentile for a servable summary")
        kind = f"map<{column.type},int64>"
    features: list[FeatureModel] = []
    for text, seconds in windows:
        base = agg.name if agg.name is not None else f"{agg.column}_{op.value}"
        name = base + (f"_{text}" if text else "")
        tile = tile_s if tile_s is not None else default_tile(seconds)
        features.append(
            FeatureModel(name, ColumnInfo(kind, "", True, True, None), agg.column, op.value,
                         text or None, format_duration(tile), index)
        )
    bounded = [s for _, s in windows if s is not None]
    return features, max(bounded) if bounded else None


def _windows(raw: object, where: str, sink: ProblemSink) -> list[tuple[str, int | None]]:
    """(window as written in names, seconds) per window; ("", None) for unbounded."""
    if raw is None:
        return [("", None)]
    if isinstance(raw, str) or not isinstance(raw, Sequence) or not raw:
        sink.error(f"{where}.windows", f"{raw!r:.40} is not a non-empty list of windows",
                   'write windows=("1h", "1d") or windows=None for unbounded')
        return []
    out: list[tuple[str, int | None]] = []
    for w in raw:
        seconds = parse_duration(w)
        if seconds is None:
            sink.error(f"{where}.windows", f"{w!r:.20} is not a window",
                       'write minutes, hours or days: "30m", "1h", "7d"')
        elif any(s == seconds for _, s in out):
            sink.error(f"{where}.windows", f"{w} is listed twice", "remove the duplicate")
        else:
            out.append((str(w).strip(), seconds))
    return out
