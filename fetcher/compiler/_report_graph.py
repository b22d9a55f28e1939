"""The dependency graph of a compile (metadata/dependencies.json) drawn as an inline SVG.

A layered layout, left to right: tables, then what reads them (group-bys), then what uses
those (joins), one column per layer; a node's layer is the longest path from it to a
table, so every arrow points right. Within a column, nodes are ordered by the mean row of
their neighbours (two sweeps of the barycenter heuristic, ties by name), which keeps
arrows short without any randomness: the same graph always gives the same coordinates.
Arrows follow the data, from what is used to its user (dependencies.json lists each edge
the other way, `from` the user `to` what it uses). Every text is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

BOX_H = 38
ROW = 52  # vertical pitch of the boxes in a column
GAP = 90  # horizontal space between columns, where the arrows run
MARGIN = 16
CHAR_W = 7.3  # of 12px monospace
SUB_RATIO = 10 / 12  # the second line is 10px
MIN_W = 150
MAX_CHARS = 48  # longer names are cut with an ellipsis (the box's title has the full name)

_KIND_ORDER = {"table": 0, "group_by": 1, "join": 2}
_KIND_LABEL = {"table": "table", "group_by": "group-by", "join": "join"}


@dataclass(frozen=True, slots=True)
class Box:
    """One node's place: its column, row, and the box's corner and width in pixels."""

    node_id: str
    layer: int
    x: int
    y: int
    width: int


def _layers(ids: Sequence[str], uses: Mapping[str, list[str]]) -> dict[str, int]:
    """Longest path to a node without outgoing edges (a table); a cycle (which stage 3
    refuses) is cut where it closes, so this always ends."""
    layer: dict[str, int] = {}

    def visit(node: str, path: set[str]) -> int:
        if node not in layer:
            path.add(node)
            below = [visit(t, path) for t in uses.get(node, ()) if t not in path]
            path.discard(node)
            layer[node] = 1 + max(below, default=-1)
        return layer[node]

    for node in ids:
        visit(node, set())
    return layer


def _order(columns: list[list[str]], uses: Mapping[str, list[str]],
           users: Mapping[str, list[str]], names: Mapping[str, str]) -> None:
    """Reorder each column in place by the barycenter of its neighbours' rows."""
    row: dict[str, int] = {n: i for col in columns for i, n in enumerate(col)}

    def sweep(order: Sequence[int], neighbours: Mapping[str, list[str]]) -> None:
        for c in order:
            def key(n: str) -> tuple[float, str, str]:
                near = [row[m] for m in neighbours.get(n, ()) if m in row]
                return (sum(near) / len(near) if near else float(row[n]), names[n], n)
            columns[c].sort(key=key)
            row.update({n: i for i, n in enumerate(columns[c])})

    up, down = range(1, len(columns)), range(len(columns) - 2, -1, -1)
    for _ in range(2):
        sweep(up, uses)
        sweep(down, users)
    sweep(up, uses)


def layout(graph: Mapping[str, Any],
           subtitles: Mapping[str, str]) -> tuple[dict[str, Box], int, int]:
    """Each node's box (as wide as its column's longest name or subtitle), and the
    drawing's width and height."""
    nodes = {n["id"]: n for n in graph["nodes"]}
    uses: dict[str, list[str]] = {n: [] for n in nodes}
    users: dict[str, list[str]] = {n: [] for n in nodes}
    for e in graph["edges"]:
        if e["from"] in nodes and e["to"] in nodes:
            uses[e["from"]].append(e["to"])
            users[e["to"]].append(e["from"])
    ids = sorted(nodes, key=lambda n: (_KIND_ORDER.get(nodes[n]["kind"], 3), nodes[n]["name"], n))
    layer = _layers(ids, uses)
    columns: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for n in ids:
        columns[layer[n]].append(n)
    _order(columns, uses, users, {n: nodes[n]["name"] for n in nodes})
    height = max((len(c) for c in columns), default=0) * ROW - (ROW - BOX_H) + 2 * MARGIN
    boxes: dict[str, Box] = {}
    x = MARGIN
    for c, col in enumerate(columns):
        chars = max(max(len(_label(nodes[n]["name"])), len(subtitles.get(n, "")) * SUB_RATIO)
                    for n in col)
        width = max(MIN_W, round(chars * CHAR_W) + 20)
        top = MARGIN + (height - 2 * MARGIN - (len(col) * ROW - (ROW - BOX_H))) // 2
        for r, n in enumerate(col):
            boxes[n] = Box(n, c, x, top + r * ROW, width)
        x += width + GAP
    return boxes, max(x - GAP + MARGIN, 2 * MARGIN), max(height, 2 * MARGIN)


def _label(name: str) -> str:
    return name if len(name) <= MAX_CHARS else name[: MAX_CHARS - 1] + "\u2026"


def _node(box: Box, node: Mapping[str, Any], sub: str) -> str:
    kind = str(node["kind"])
    where = f" ({node['file']}:{node['line']})" if node.get("file") else ""
    title = f"{_KIND_LABEL.get(kind, kind)} {node['name']}{where}"
    cx = box.x + 10
    return (
        f'<g class="node node-{escape(kind)}" data-id="{escape(box.node_id)}">'
        f"<title>{escape(title)}</title>"
        f'<rect class="box" x="{box.x}" y="{box.y}" width="{box.width}" height="{BOX_H}" '
        f'rx="5"/>'
        f'<text class="name" x="{cx}" y="{box.y + 16}">{escape(_label(str(node["name"])))}</text>'
        f'<text class="sub" x="{cx}" y="{box.y + 31}">{escape(sub)}</text></g>'
    )


def _edge(edge: Mapping[str, Any], user: Box, used: Box) -> str:
    x1, y1 = used.x + used.width, used.y + BOX_H // 2
    x2, y2 = user.x - 2, user.y + BOX_H // 2
    bend = max((x2 - x1) // 2, 20)
    kind = str(edge["kind"])
    title = f"{edge['from']} uses {edge['to']} ({kind})"
    return (
        f'<path class="edge edge-{escape(kind)}" data-from="{escape(str(edge["from"]))}" '
        f'data-to="{escape(str(edge["to"]))}" '
        f'd="M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}" '
        f'marker-end="url(#arrow)"><title>{escape(title)}</title></path>'
    )


def draw_graph(graph: Mapping[str, Any], subtitles: Mapping[str, str]) -> str:
    """The graph as an `<svg>` element; `subtitles`: node id -> its box's second line (the
    kind is used when a node has none)."""
    boxes, width, height = layout(graph, subtitles)
    nodes = {n["id"]: n for n in graph["nodes"]}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="dependency graph: {len(nodes)} nodes, {len(graph["edges"])} edges">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/>'
        "</marker></defs>",
    ]
    for e in graph["edges"]:
        if e["from"] in boxes and e["to"] in boxes:
            parts.append(_edge(e, boxes[e["from"]], boxes[e["to"]]))
    for node_id in sorted(boxes, key=lambda n: (boxes[n].layer, boxes[n].y)):
        node = nodes[node_id]
        kind = str(node["kind"])
        parts.append(_node(boxes[node_id], node,
                           subtitles.get(node_id, _KIND_LABEL.get(kind, kind))))
    parts.append("</svg>")
    return "\n".join(parts)
