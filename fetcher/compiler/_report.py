"""`fetcher compile --report FILE.html`: the compile report as a page a person reads.

One self-contained file: inline CSS, an inline SVG of the dependency graph
(`_report_graph.py`), no script, no external asset. Sections: the summary, the errors and
warnings by stage, the objects, the graph, the features of each object (from the lineage)
and stage 5's numbers. Every text that comes from the definitions is HTML-escaped. The page
is deterministic: the only varying element is the `<p id="timings">` line (compile and
validation seconds, rounded); `render_report(..., timings=False)` leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from fetcher.compiler._compile import CompiledObject, CompileReport
from fetcher.compiler._problems import Problem, Stage
from fetcher.compiler._report_graph import draw_graph

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d2329; margin: 24px 32px; }
h1 { font-size: 22px; margin: 0 0 12px; } h2 { font-size: 18px; margin: 28px 0 8px;
  border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
table { border-collapse: collapse; margin: 4px 0 12px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; } td.num { text-align: right; }
code, .mono { font-family: ui-monospace, monospace; font-size: 13px; }
table.problems td { overflow-wrap: anywhere; }
table.problems td:nth-child(4) { min-width: 22em; }
table.problems td:nth-child(5) { min-width: 14em; }
.status { font-size: 17px; font-weight: 600; padding: 6px 12px; display: inline-block;
  border-radius: 4px; } .ok { background: #dafbe1; color: #116329; }
.failed { background: #ffebe9; color: #a40e26; }
tr.error td.level { color: #a40e26; font-weight: 600; } tr.warning td.level { color: #7d4e00; }
.none { color: #57606a; font-style: italic; }
svg.graph { border: 1px solid #d0d7de; background: #fbfcfd; max-width: none; }
svg .box { stroke-width: 1.5; } svg text { font: 12px ui-monospace, monospace; fill: #1d2329; }
svg text.sub { font-size: 10px; fill: #57606a; }
.node-table .box { fill: #eef1f4; stroke: #8c959f; }
.key-table { background: #eef1f4; border-color: #8c959f; }
.node-group_by .box { fill: #e6f4ea; stroke: #2da44e; }
.key-group_by { background: #e6f4ea; border-color: #2da44e; }
.node-join .box { fill: #ddf4ff; stroke: #0969da; }
.key-join { background: #ddf4ff; border-color: #0969da; }
svg path.edge { fill: none; stroke: #6e7781; stroke-width: 1.3; }
svg path.edge-part { stroke: #0969da; } svg path.edge-left, svg path.edge-source {
  stroke: #8250df; stroke-dasharray: 5 3; } svg marker path { fill: #6e7781; }
.key { display: inline-block; width: 12px; height: 12px; border: 1.5px solid;
  vertical-align: middle; margin: 0 4px 0 12px; }
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def _table(head: Sequence[str] | None, rows: Iterable[Sequence[str]], cls: str) -> str:
    """A table of `head` (None: no header row) and `rows`, cells already escaped."""
    out = [f'<table class="{cls}">']
    if head is not None:
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _summary(report: CompileReport, timings: bool) -> str:
    groups = [o for o in report.objects if o.kind == "group_by"]
    joins = [o for o in report.objects if o.kind == "join"]
    if report.ok:
        status = '<p class="status ok" id="status">OK: compiled, every stage clean</p>'
    else:
        stage = report.stopped_at.label if report.stopped_at is not None else "?"
        status = (f'<p class="status failed" id="status">FAILED: {len(report.errors)} '
                  f"error(s) in stage {_e(stage)}; later stages did not run</p>")
    served = [o for o in report.objects if o.served]
    facts = [
        ("repository", f"<code>{_e(report.repo)}</code>"),
        ("output", f"<code>{_e(report.out)}</code>" if report.out and report.ok
         else f"<code>{_e(report.out)}</code> (not written)" if report.out
         else "none (checked only: no --out)"),
        ("compared with", f"<code>{_e(report.previous)}</code>" if report.previous
         else "nothing (a first compile)"),
        ("objects", f"{len(groups)} group-by(s), {len(joins)} join(s); {len(served)} served"),
        ("errors", str(len(report.errors))),
        ("warnings", str(len(report.warnings))),
        ("stopped at", _e(report.stopped_at.label) if report.stopped_at is not None
         else "nowhere (every stage ran)"),
    ]
    counts = {stage: 0 for stage in Stage}
    for p in report.errors:
        counts[p.stage] += 1
    parts = [status, _table(None, ([f"<b>{k}</b>", v] for k, v in facts), "facts"),
             "<h3>Errors by stage</h3>",
             _table([s.label for s in Stage], [[str(counts[s]) for s in Stage]], "counts")]
    if timings:
        parts.append(f'<p id="timings">compile {report.compile_s:.2f} s, validation '
                     f"{report.validation_s:.2f} s (the only line that differs between runs)</p>")
    return '<section id="summary"><h2>Summary</h2>\n' + "\n".join(parts) + "\n</section>"


def _problem_rows(problems: Sequence[Problem]) -> list[list[str]]:
    return [[f'<span class="mono">{_e(p.file)}:{p.line}</span>', _e(p.definition),
             f"<code>{_e(p.field)}</code>" if p.field else "", _e(p.problem), _e(p.fix)]
            for p in problems]


def _problems(report: CompileReport) -> str:
    parts = ['<section id="problems"><h2>Errors and warnings</h2>']
    for title, level, problems in (("Errors", "error", report.errors),
                                   ("Warnings", "warning", report.warnings)):
        parts.append(f"<h3>{title} ({len(problems)})</h3>")
        if not problems:
            parts.append(f'<p class="none">no {level}s</p>')
        for stage in Stage:
            mine = [p for p in problems if p.stage is stage]
            if mine:
                parts.append(f'<h4 id="{level}s-{stage.label}">stage {stage.value}, '
                             f"{stage.label}: {len(mine)}</h4>")
                parts.append(_table(("where", "object", "field", "problem", "fix"),
                                    _problem_rows(mine), f"problems {level}s"))
    parts.append("</section>")
    return "\n".join(parts)


def _served(o: CompiledObject) -> str:
    if o.served is None:
        return '<span class="none">not compiled</span>'
    return "served" if o.served else "metadata only"


def _objects(report: CompileReport) -> str:
    rows = [[_e("group-by" if o.kind == "group_by" else o.kind), f"<b>{_e(o.name)}</b>",
             _e(o.version) if o.version else '<span class="none">none</span>', _served(o),
             f'<span class="mono">{_e(o.file)}:{o.line}</span>']
            for o in sorted(report.objects, key=lambda o: (o.kind, o.name))]
    body = (_table(("kind", "name", "version", "served", "defined at"), rows, "objects")
            if rows else '<p class="none">no definitions found</p>')
    note = ("" if report.ok else '<p class="none">versions and served are known only '
            "when every stage is clean</p>")
    return f'<section id="objects"><h2>Objects ({len(rows)})</h2>\n{body}\n{note}</section>'


def _feature_row(name: str, f: Mapping[str, Any], in_join: bool) -> list[str]:
    if "derivation" in f:  # a join's derived feature
        row = [f"<code>{_e(name)}</code>", f"<code>{_e(f['type'])}</code>",
               f"<code>{_e(f['derivation'])}</code>", "derived", "", ""]
        return [*row[:1], "", "", *row[1:]] if in_join else row
    sources = "<br>".join(
        f"<code>{_e(s['table'])}</code>" + (
            f".<code>{_e(f['column'])}</code>" if s.get("expression") == f["column"]
            else f" <code>{_e(s.get('expression'))}</code> as <code>{_e(f['column'])}</code>")
        for s in f.get("sources", ()))
    row = [f"<code>{_e(name)}</code>", f"<code>{_e(f['type'])}</code>", sources,
           _e(f.get("operation") or "(the column)"), _e(f.get("window") or ""),
           _e(f.get("tile") or "")]
    if in_join:
        row[1:1] = [_e(f.get("group_by")), f"<code>{_e(f.get('feature'))}</code>"]
    return row


def _features(report: CompileReport) -> str:
    parts = ['<section id="features"><h2>Features</h2>']
    lineage = report.lineage
    if lineage is None:
        parts.append(f'<p class="none">not compiled: {_stopped(report)}</p></section>')
        return "\n".join(parts)
    for section, kind in (("group_bys", "group-by"), ("joins", "join")):
        in_join = section == "joins"
        head = ["feature", "type", "source table.column", "operation", "window", "tile"]
        if in_join:
            head[1:1] = ["group-by", "its feature"]
        for name in sorted(lineage[section]):
            entry = lineage[section][name]
            features = entry["features"]
            served = "served" if entry["served"] else "metadata only"
            parts.append(f'<details open class="object-features"><summary><b>{kind} '
                         f"{_e(name)}</b>: {len(features)} feature(s), {served}</summary>")
            parts.append(_table(head, (_feature_row(n, f, in_join) for n, f in features.items()),
                                "features"))
            parts.append("</details>")
    parts.append("</section>")
    return "\n".join(parts)


def _stopped(report: CompileReport) -> str:
    stage = report.stopped_at.label if report.stopped_at is not None else "?"
    return f"the compile stopped at stage {_e(stage)}, before the output was built"


def _graph(report: CompileReport) -> str:
    head = '<section id="graph"><h2>Dependency graph</h2>'
    if report.graph is None:
        return f'{head}<p class="none">not drawn: {_stopped(report)}</p></section>'
    objects = {f"{o.kind}:{o.name}": o for o in report.objects}
    subtitles: dict[str, str] = {}
    for node_id, o in objects.items():
        kind = "group-by" if o.kind == "group_by" else o.kind
        bits = [kind] + ([f"v{o.version}"] if o.version else []) + (
            [] if o.served is None else ["served" if o.served else "metadata only"])
        subtitles[node_id] = " \u00b7 ".join(bits)
    legend = ('<p class="legend"><span class="key key-table"></span>table'
              '<span class="key key-group_by"></span>group-by'
              '<span class="key key-join"></span>join. Arrows follow the data: from what is '
              "used to its user (blue: a join part; dashed: a join as a source or a left; "
              f"grey: a table read). {len(report.graph['nodes'])} nodes, "
              f"{len(report.graph['edges'])} edges.</p>")
    return f"{head}\n{legend}\n<div>{draw_graph(report.graph, subtitles)}</div></section>"


def _performance(report: CompileReport) -> str:
    head = '<section id="performance"><h2>Performance (stage 5)</h2>'
    numbers = report.performance
    if numbers is None:
        return f'{head}<p class="none">stage 5 did not run</p></section>'
    limits = numbers["limits"]
    parts = [head, f"<p>limits: {limits['stores']} stores, {limits['lookups']} lookups, "
             f"{limits['features']} features, {limits['tiles']} tiles</p>"]
    joins = [[_e(n), _e(", ".join(v["stores"])), str(v["lookups_per_entity"]),
              str(v["features_per_vector"]), str(v["tiles_read"])]
             for n, v in sorted(numbers["joins"].items())]
    if joins:
        parts.append(_table(("join", "stores", "lookups per entity", "features per vector",
                             "tiles read"), joins, "perf-joins"))
    groups = [[_e(n), _e(", ".join(f"{w}: {t}" for w, t in v["tiles_per_window"].items())),
               str(v["tiles_read"])] for n, v in sorted(numbers["group_bys"].items())]
    if groups:
        parts.append(_table(("group-by", "tiles per window", "tiles read"), groups,
                            "perf-groups"))
    parts.append("</section>")
    return "\n".join(parts)


def render_report(report: CompileReport, *, timings: bool = True) -> str:
    """The report as one HTML page (`timings=False`: without the seconds, byte-stable)."""
    title = f"fetcher compile: {report.repo}: {'ok' if report.ok else 'failed'}"
    body = [_summary(report, timings), _problems(report), _objects(report), _graph(report),
            _features(report), _performance(report)]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<h1>fetcher compile report</h1>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def write_report(report: CompileReport, path: str | Path) -> None:
    """Write the page to `path` (its folder is created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(report), encoding="utf-8")
