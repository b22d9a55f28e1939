"""`fetcher compile --report FILE.html`: what the page holds, and what a real browser shows.

The unit tests read the HTML; the browser tests open it in Debian's chromium (headless),
read the DOM it builds and decode the screenshot it takes. Chromium missing is a failure
(scripts/setup.sh installs it in the dev profile), never a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from html import escape
from pathlib import Path

import pytest

from fetcher.cli import main
from fetcher.compiler import CompileReport, Limits, Stage, compile_repo
from fetcher.compiler import run_compile as run_compile_cli
from fetcher.compiler._report import render_report
from fetcher.compiler._report_graph import layout
from tests.unit.compiler.chronon_support import SAMPLES, write_types
from tests.unit.compiler.repo_support import write_repo

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "config" / "demo_features"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

# A clean repository whose table name and select expression hold HTML's special characters.
SPECIAL = {
    "group_bys/risk/users.py": """
        user_profile = GroupBy(
            keys=["user_id"],
            sources=[EventSource(
                table="events.users<&>",
                query=Query(selects={"user_id": "user_id", "age": "age", "minor": "age < 18"},
                            time_column="ts"),
                columns={"user_id": "int64", "age": "int64", "minor": "bool"},
            )],
            online=True,
        )
    """,
    "joins/risk/scoring.py": """
        from group_bys.risk.users import user_profile

        scoring = Join(left={"user_id": "int64"},
                       right_parts=[JoinPart(user_profile, prefix="user_")], online=True)
    """,
}
# Two stage-1 errors: a name with <script> in it (refused by name) and sum of a string.
BROKEN = {
    "group_bys/risk/users.py": """
        user_profile = GroupBy(
            keys=["user_id"],
            sources=[EventSource(
                table="events.users",
                query=Query(selects=["user_id", "country"], time_column="ts"),
                columns={"user_id": "int64", "country": "string"},
            )],
            aggregations=[Aggregation("country", Operation.SUM, windows=["1d"])],
            name="risk.<script>alert(1)</script>",
        )
    """,
}
SCRIPT_NAME = "risk.<script>alert(1)</script>"


def _cells(html: str, cls: str) -> list[list[str]]:
    """The rows (cells, tags stripped) of the first table of class `cls`."""
    table = re.search(rf'<table class="{cls}">(.*?)</table>', html, re.S)
    assert table, f"no table of class {cls}"
    return [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)][1:]


def _svg(html: str) -> str:
    found = re.search(r"<svg .*?</svg>", html, re.S)
    assert found, "no svg"
    return found.group(0)


def _demo() -> CompileReport:
    report = compile_repo(DEMO)
    assert report.ok, [p.render() for p in report.errors]
    return report


# --- the page ---------------------------------------------------------------------------


def test_a_clean_compile_shows_objects_versions_and_features() -> None:
    report = _demo()
    html = render_report(report)
    assert 'class="status ok"' in html
    objects = sorted(report.objects, key=lambda o: (o.kind, o.name))
    assert _cells(html, "objects") == [
        ["group-by" if o.kind == "group_by" else "join", o.name, "1.0.0", "served",
         f"{o.file}:{o.line}"] for o in objects]
    assert report.lineage is not None
    for section in ("group_bys", "joins"):
        for name, entry in report.lineage[section].items():
            assert f"<b>{'group-by' if section == 'group_bys' else 'join'} {name}</b>" in html
            for feature, f in entry["features"].items():
                assert f"<td><code>{feature}</code></td><td>" in html
                assert f"<code>{escape(f['type'])}</code>" in html
    assert "user_profile.age" not in html  # a table.column, never group.feature
    assert "<code>demo.user_profile_daily</code>.<code>age</code>" in html
    assert "no errors" in html and "no warnings" in html


def test_the_graph_has_one_box_per_node_and_one_arrow_per_edge() -> None:
    report = _demo()
    assert report.graph is not None
    svg = _svg(render_report(report))
    ids = re.findall(r'<g class="node node-\w+" data-id="([^"]+)">', svg)
    assert sorted(ids) == sorted(n["id"] for n in report.graph["nodes"])
    assert svg.count('<rect class="box"') == len(report.graph["nodes"]) == 8
    arrows = re.findall(r'<path class="edge edge-(\w+)" data-from="([^"]+)" data-to="([^"]+)"',
                        svg)
    assert sorted(arrows) == sorted((e["kind"], e["from"], e["to"])
                                    for e in report.graph["edges"])
    assert len(arrows) == 7
    assert all(f'data-id="{o.kind}:{o.name}"' in svg for o in report.objects)


def test_the_layout_is_layered_and_boxes_never_overlap() -> None:
    report = _demo()
    assert report.graph is not None
    boxes, width, height = layout(report.graph, {})
    kinds = {n["id"]: n["kind"] for n in report.graph["nodes"]}
    column = {kind: {b.layer for i, b in boxes.items() if kinds[i] == kind}
              for kind in ("table", "group_by", "join")}
    assert column == {"table": {0}, "group_by": {1}, "join": {2}}
    for e in report.graph["edges"]:  # arrows go right: a user sits right of what it uses
        assert boxes[e["from"]].x > boxes[e["to"]].x + boxes[e["to"]].width
    placed = sorted(boxes.values(), key=lambda b: (b.x, b.y))
    for a in placed:
        assert a.x > 0 and a.x + a.width < width and a.y > 0 and a.y + 38 < height
        for b in placed:
            if a is not b and a.x == b.x:
                assert abs(a.y - b.y) >= 38, (a, b)
    assert layout(report.graph, {}) == (boxes, width, height)


def test_text_from_the_definitions_is_escaped(tmp_path: Path) -> None:
    report = compile_repo(write_repo(tmp_path / "repo", SPECIAL))
    assert report.ok, [p.render() for p in report.errors]
    html = render_report(report)
    assert "events.users<&>" not in html and "age < 18" not in html
    assert "events.users&lt;&amp;&gt;" in _svg(html)  # the table's box
    assert 'data-id="table:events.users&lt;&amp;&gt;"' in html
    assert "<code>events.users&lt;&amp;&gt;</code> <code>age &lt; 18</code> as " in html
    broken = compile_repo(write_repo(tmp_path / "broken", BROKEN))
    page = render_report(broken)
    assert "<script" not in page
    assert escape(SCRIPT_NAME, quote=False) in page


def test_a_failed_compile_lists_every_error_by_stage_and_draws_no_graph(tmp_path: Path) -> None:
    report = compile_repo(write_repo(tmp_path / "repo", BROKEN))
    assert report.stopped_at is Stage.SCHEMA and len(report.errors) == 2
    html = render_report(report)
    assert 'class="status failed"' in html and "2 error(s) in stage schema" in html
    assert '<h4 id="errors-schema">stage 1, schema: 2</h4>' in html
    rows = _cells(html, "problems errors")
    expected = [[f"{p.file}:{p.line}", escape(p.definition), p.field, escape(p.problem),
                 escape(p.fix)] for p in report.errors]
    assert rows == expected
    assert {r[2] for r in rows} == {"name", "aggregations[0].operation"}
    assert "sum needs a numeric column" in html
    assert "not drawn: the compile stopped at stage schema" in html
    assert "<svg" not in html and "not compiled: the compile stopped" in html
    assert _cells(html, "objects")[0][3] == "not compiled"


def test_a_compile_failed_after_stage_3_still_draws_the_graph() -> None:
    report = compile_repo(DEMO, strict=True, limits=Limits(features=30))
    assert report.stopped_at is Stage.PERFORMANCE
    html = render_report(report)
    assert '<h4 id="errors-performance">stage 5, performance: 1</h4>' in html
    assert "44 features per vector, above --max-features 30" in html
    assert _svg(html).count('<rect class="box"') == 8
    assert "perf-joins" in html and "<td>user_merchant</td><td>main</td><td>2</td>" in html


def test_the_page_is_deterministic_but_for_the_timings_line(tmp_path: Path) -> None:
    pages = []
    for run in ("a", "b"):
        page = tmp_path / run / "report.html"
        with open(os.devnull, "w") as null:
            assert run_compile_cli(str(DEMO), str(tmp_path / run / "out"), report=str(page),
                                   stdout=null, stderr=null) == 0
        pages.append(page.read_text(encoding="utf-8"))
    assert all(len(re.findall(r'<p id="timings">', p)) == 1 for p in pages)
    stripped = [re.sub(r'<p id="timings">[^<]*</p>\n', "", p) for p in pages]
    assert stripped[0].replace(str(tmp_path / "a"), "") == stripped[1].replace(
        str(tmp_path / "b"), "")
    assert render_report(_demo(), timings=False) == render_report(_demo(), timings=False)
    assert 'id="timings"' not in render_report(_demo(), timings=False)


def test_the_cli_writes_the_page_when_the_compile_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = write_repo(tmp_path / "repo", BROKEN)
    page = tmp_path / "reports" / "compile.html"
    assert main(["compile", str(repo), "--json", "--report", str(page)]) == 1
    assert json.loads(capsys.readouterr().out)["stopped_at"] == "schema"  # --json unchanged
    html = page.read_text(encoding="utf-8")
    assert "FAILED" in html and "sum needs a numeric column" in html
    assert html.startswith("<!DOCTYPE html>") and "<link" not in html and "src=" not in html


def test_the_cli_refuses_a_report_path_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with open(os.devnull, "w") as null:
        assert run_compile_cli(str(DEMO), None, report=str(tmp_path / "file" / "r.html"),
                               stdout=null, stderr=null) == 2


def _chronon_samples(tmp_path: Path) -> Path:
    """Three real Chronon samples that compile together (offline, into the metadata)."""
    root = tmp_path / "production"
    for rel in ("joins/sample_team/sample_join.v1",
                "joins/sample_team/sample_join.group_by_of_group_by",
                "joins/sample_team/sample_backfill_mutation_join.v0"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLES / rel, root / rel)
    return root


def test_a_chronon_compile_writes_its_page(tmp_path: Path) -> None:
    page = tmp_path / "chronon.html"
    assert main(["compile", "--from-chronon", str(_chronon_samples(tmp_path)), "--types",
                 str(write_types(tmp_path / "types.json")), "--report", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    assert "sample_team.sample_join.v1" in html and "metadata only" in html
    assert "sample_team_sample_group_by_v1_impressed_unique_count_1d_sum" in html
    assert "join_part_tags" in html  # the sample's warning
    assert _svg(html).count('class="edge ') >= 3


# --- in a real browser ------------------------------------------------------------------


def _chromium() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"{CHROMIUM} is missing: the report tests open pages in Debian's chromium. "
                    "Fix: run scripts/setup.sh (the dev profile installs it)")
    return CHROMIUM


def _browse(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.iterdir()))}"
    done = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _write(report: CompileReport, path: Path) -> Path:
    path.write_text(render_report(report), encoding="utf-8")
    return path


def test_chromium_shows_the_objects_the_errors_and_the_graph(tmp_path: Path) -> None:
    clean = _demo()
    dom = _browse(_write(clean, tmp_path / "clean.html"), tmp_path, "--dump-dom").stdout
    assert "OK: compiled, every stage clean" in dom
    for o in clean.objects:
        assert f"<b>{o.name}</b>" in dom
    svg = _svg(dom)
    assert clean.graph is not None
    assert len(re.findall(r"<rect\b[^>]*class=\"box\"", svg)) == len(clean.graph["nodes"])
    assert len(re.findall(r"<path\b[^>]*class=\"edge ", svg)) == len(clean.graph["edges"])
    assert "demo.user_profile_daily" in svg

    broken = compile_repo(write_repo(tmp_path / "repo", BROKEN))
    dom = _browse(_write(broken, tmp_path / "broken.html"), tmp_path, "--dump-dom").stdout
    assert "FAILED: 2 error(s) in stage schema" in dom
    assert "<script" not in dom  # the name stayed text: the browser built no element of it
    assert escape(SCRIPT_NAME, quote=False) in dom
    assert "sum needs a numeric column" in dom and "aggregations[0].operation" in dom


def _pixels(png: bytes) -> tuple[int, int, int, list[bytes]]:
    """Width, height, bytes per pixel and the rows of an 8-bit RGB(A) PNG, unfiltered (PNG
    spec, section 9)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        (size,), kind = struct.unpack(">I", png[pos:pos + 4]), png[pos + 4:pos + 8]
        data = png[pos + 8:pos + 8 + size]
        if kind == b"IHDR":
            header = data
        elif kind == b"IDAT":
            idat += data
        pos += 12 + size
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        filt, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if filt == 2:  # Up, the commonest: add the row above bytewise, as two big integers
            line, filt = bytearray(_add_bytes(bytes(line), bytes(prev))), 0
        for i in range(stride if filt else 0):  # Sub (1), Average (3), Paeth (4)
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if filt == 1:
                line[i] = (line[i] + a) & 0xFF
            elif filt == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def _add_bytes(a: bytes, b: bytes) -> bytes:
    """Bytewise (a + b) mod 256, without a carry between bytes (SWAR on Python integers)."""
    low, high = int.from_bytes(b"\x7f" * len(a), "big"), int.from_bytes(b"\x80" * len(a), "big")
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    return (((x & low) + (y & low)) ^ ((x ^ y) & high)).to_bytes(len(a), "big")


def _colors(rows: list[bytes], bpp: int) -> dict[tuple[int, int, int], int]:
    """How many of the sampled pixels have each RGB colour."""
    counts: dict[tuple[int, int, int], int] = {}
    for row in rows[::4]:  # every fourth pixel of every fourth row: enough, and fast
        for i in range(0, len(row), 4 * bpp):
            rgb = (row[i], row[i + 1], row[i + 2])
            counts[rgb] = counts.get(rgb, 0) + 1
    return counts


def _near(colors: dict[tuple[int, int, int], int], hex_rgb: str) -> int:
    want = bytes.fromhex(hex_rgb)
    return sum(n for rgb, n in colors.items()
               if all(abs(a - b) <= 3 for a, b in zip(rgb, want, strict=True)))


def test_chromium_draws_the_page(tmp_path: Path) -> None:
    for name, report, status in (("clean", _demo(), "dafbe1"), ("broken", compile_repo(
            write_repo(tmp_path / "repo", BROKEN)), "ffebe9")):
        shot = tmp_path / f"{name}.png"
        _browse(_write(report, tmp_path / f"{name}.html"), tmp_path,
                f"--screenshot={shot}", "--window-size=1280,2000")
        assert shot.is_file() and shot.stat().st_size > 20_000, name
        width, height, bpp, rows = _pixels(shot.read_bytes())
        assert (width, height) == (1280, 2000)
        colors = _colors(rows, bpp)
        white = _near(colors, "ffffff")
        assert len(colors) > 20 and white < 0.99 * sum(colors.values()), (name, len(colors))
        assert _near(colors, status) > 50, f"{name}: the status box is not drawn"
        if report.graph is not None:  # the boxes of the graph are in the first 2000 pixels
            for fill in ("eef1f4", "e6f4ea", "ddf4ff"):
                assert _near(colors, fill) > 50, f"{name}: no box filled #{fill}"
