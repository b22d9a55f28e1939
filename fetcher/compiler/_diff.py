"""`fetcher diff --from A --to B`: what changed between two compiled outputs, per object.

Per object: added / removed / changed features (name, type), key changes, an aggregation
group's layout changes (columns and operations), and the version bump the change implies
(fetcher/compiler/_versions.py). Exit codes: 0 whatever the
differences (a diff reports, it does not judge), 2 usage (a folder that is not a compiled
output).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from fetcher.compiler._compiled import CompiledReadError, read_compiled
from fetcher.compiler._versions import Change, compare_outputs, layout_lines

EXIT_OK = 0
EXIT_USAGE = 2


def _keys(keys: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{n}:{t}" for n, t in keys) or "(none)"


def change_json(c: Change) -> dict[str, Any]:
    """One object's change as `fetcher diff --json` lists it."""
    return {
        "kind": c.kind,
        "name": c.name,
        "status": c.status,
        "bump": c.bump.label if c.old is not None and c.new is not None else None,
        "from_version": c.old.version if c.old is not None else None,
        "to_version": c.new.version if c.new is not None else None,
        "keys": ({"from": [list(k) for k in c.old.keys], "to": [list(k) for k in c.new.keys]}
                 if c.keys_changed and c.old is not None and c.new is not None else None),
        "aggregation_layout": (layout_lines(c.old.layout, c.new.layout)
                               if c.layout_changed and c.old is not None and c.new is not None
                               else None),
        "features": {
            "added": [{"name": n, "type": s.render()} for n, s in c.added],
            "removed": [{"name": n, "type": s.render()} for n, s in c.removed],
            "changed": [{"name": n, "from": a.render(), "to": b.render()}
                        for n, a, b in c.changed],
        },
    }


def _human(changes: list[Change], out: TextIO) -> None:
    counts = {"added": 0, "removed": 0, "changed": 0, "unchanged": 0}
    for c in changes:
        counts[c.status] += 1
        if c.old is None and c.new is not None:
            print(f"{c.kind} {c.name}: added ({c.new.version}, {len(c.new.features)} features)",
                  file=out)
        elif c.new is None and c.old is not None:
            print(f"{c.kind} {c.name}: removed (was {c.old.version})", file=out)
        elif c.status == "changed" and c.old is not None and c.new is not None:
            print(f"{c.kind} {c.name}: {c.bump.label} ({c.old.version} -> {c.new.version})",
                  file=out)
            if c.keys_changed:
                print(f"  ~ keys: {_keys(c.old.keys)} -> {_keys(c.new.keys)}", file=out)
            if c.layout_changed:
                for line in layout_lines(c.old.layout, c.new.layout):
                    print(f"  {line if line[:2] in ('+ ', '- ', '~ ') else '~ ' + line}",
                          file=out)
            for n, s in c.added:
                print(f"  + {n}: {s.render()}", file=out)
            for n, s in c.removed:
                print(f"  - {n}: {s.render()}", file=out)
            for n, a, b in c.changed:
                print(f"  ~ {n}: {a.render()} -> {b.render()}", file=out)
    print(", ".join(f"{v} {k}" for k, v in counts.items()), file=out)


def run_diff(a: str, b: str, *, as_json: bool = False, stdout: TextIO | None = None,
             stderr: TextIO | None = None) -> int:
    """Compare compiled outputs `a` and `b` and print the changes: the exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        old, new = read_compiled(Path(a)), read_compiled(Path(b))
    except CompiledReadError as exc:
        if as_json:
            print(json.dumps({"usage_error": str(exc)}, indent=2), file=stdout)
        print(f"fetcher diff: {exc}", file=stderr)
        return EXIT_USAGE
    changes = compare_outputs(old, new)
    if as_json:
        print(json.dumps({"from": a, "to": b, "objects": [change_json(c) for c in changes]},
                         indent=2), file=stdout)
    else:
        _human(changes, stdout)
    return EXIT_OK
