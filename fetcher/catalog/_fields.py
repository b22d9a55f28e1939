"""What every catalog file's checks share: the problems of one load, the field checks of a
JSON object against its spec, and reading a JSON file."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MISSING = object()

# field -> (accepted JSON types, required, default, what to write); None allows JSON null.
Spec = Mapping[str, tuple[tuple[type | None, ...], bool, Any, str]]


class Problems:
    """Every problem found in one catalog load."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, file: str, field: str, problem: str, fix: str) -> None:
        """Record one problem; `file` is relative to the catalog directory."""
        self.items.append(f"{file}: {field}: {problem}. Fix: {fix}")


def _type_ok(value: Any, accepted: tuple[type | None, ...]) -> bool:
    if value is None:
        return None in accepted
    # bool is an int in Python, never in a config file.
    return any(t is not None and type(value) is t for t in accepted) or (
        float in accepted and type(value) is int
    )


def check_fields(obj: Any, spec: Spec, file: str, where: str, p: Problems) -> dict[str, Any] | None:
    """Values of the fields in `spec` (defaults filled in), or None when `obj` is unusable."""
    label = where.rstrip(".") or "(top level)"
    if not isinstance(obj, dict):
        p.add(file, label, f"is {type(obj).__name__}, not an object", "write a JSON object {...}")
        return None
    out: dict[str, Any] = {}
    ok = True
    for key in obj:
        if key not in spec:
            close = difflib.get_close_matches(key, list(spec), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            p.add(file, f"{where}{key}", "unknown field", f"{hint}known: {', '.join(spec)}")
            ok = False
    for key, (accepted, required, default, fix) in spec.items():
        value = obj.get(key, MISSING)
        if value is MISSING:
            if required:
                p.add(file, f"{where}{key}", "is missing", f"add it: {fix}")
                ok = False
            out[key] = default
        elif not _type_ok(value, accepted):
            p.add(file, f"{where}{key}", f"{json.dumps(value)[:40]} has the wrong type", fix)
            ok = False
        else:
            out[key] = value
    return out if ok else None


def read_json(path: Path, file: str, p: Problems) -> Any:
    """The parsed JSON of `path`, or None after reporting why it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        p.add(
            file,
            f"line {exc.lineno} column {exc.colno}",
            f"not valid JSON: {exc.msg}",
            "correct the JSON syntax",
        )
    except (OSError, UnicodeDecodeError) as exc:
        p.add(file, "(file)", f"cannot be read: {exc}", "check the file and its permissions")
    return None
