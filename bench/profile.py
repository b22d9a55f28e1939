"""py-spy profiles of a server under load: a flame graph (SVG) and a top-costs summary.

py-spy samples the running process by pid (no change to the fetcher). Two recordings
are taken under the same load: one SVG for people, one collapsed-stack file from
which the summary (self and inclusive time per function, self time per file) is
computed here.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.procs import run

# "function (path/to/file.py:123)" -> function, file
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


@dataclass(frozen=True, slots=True)
class Cost:
    """One function or file and its share of the samples."""

    name: str
    percent: float


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """Top costs of one recording."""

    samples: int
    self_functions: list[Cost]
    inclusive_functions: list[Cost]
    self_files: list[Cost]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return {
            "samples": self.samples,
            "self_functions": [(c.name, c.percent) for c in self.self_functions],
            "inclusive_functions": [(c.name, c.percent) for c in self.inclusive_functions],
            "self_files": [(c.name, c.percent) for c in self.self_files],
        }


def record(py_spy: Path, pid: int, out: Path, seconds: int, *, fmt: str, rate: int = 200) -> Path:
    """py-spy record of `pid` for `seconds` into `out` (fmt: flamegraph or raw)."""
    run(
        [str(py_spy), "record", "--pid", str(pid), "--duration", str(seconds),
         "--rate", str(rate), "--format", fmt, "--output", str(out), "--nonblocking"],
        f"py-spy record ({fmt})", timeout_s=seconds + 60,
    )  # fmt: skip
    return out


def _short_file(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _label(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), frame.strip()
    file = _short_file(match["file"])
    return f"{match['func']} ({file})", file


def summarize(collapsed: Path, top: int = 15) -> ProfileSummary:
    """Self and inclusive time per function, and self time per file, from py-spy raw."""
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    self_file: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_label(f) for f in stack.split(";") if f]
        # The first frame is the thread ("process 123:..."/"thread (0x..)") in py-spy raw.
        frames = [f for f in frames if not f[0].startswith(("process ", "thread "))]
        if not frames:
            continue
        leaf_fn, leaf_file = frames[-1]
        self_fn[leaf_fn] += count
        self_file[leaf_file] += count
        for fn in {f[0] for f in frames}:
            incl_fn[fn] += count

    def costs(counter: Counter[str]) -> list[Cost]:
        return [Cost(name, 100.0 * n / total) for name, n in counter.most_common(top)]

    if total == 0:
        return ProfileSummary(0, [], [], [])
    return ProfileSummary(total, costs(self_fn), costs(incl_fn), costs(self_file))


def summary_markdown(title: str, summary: ProfileSummary) -> str:
    """The summary as Markdown: three short ranked lists."""
    lines = [f"#### {title} ({summary.samples} samples)", ""]
    for heading, costs in (
        ("self time by function", summary.self_functions),
        ("inclusive time by function", summary.inclusive_functions),
        ("self time by file", summary.self_files),
    ):
        lines.append(f"{heading}:")
        lines.append("")
        lines += [f"- {c.percent:5.1f}% `{c.name}`" for c in costs[:12]]
        lines.append("")
    return "\n".join(lines)
