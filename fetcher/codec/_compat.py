"""Avro schema resolution check: can data written with one schema be read with another?

fastavro resolves writer -> reader lazily, while reading; a catalog must refuse an
incompatible previous schema at load, before any row is read. This walks both schemas
with the Avro spec's resolution rules (same ones fastavro applies) and lists what breaks.
"""

from __future__ import annotations

from typing import Any

# Writer type -> reader types it may be promoted to (Avro spec, "Schema Resolution").
_PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
_NAMED = ("record", "enum", "fixed", "error")


def resolution_problems(writer: Any, reader: Any) -> list[str]:
    """Why rows written with parsed schema `writer` cannot be read as `reader` (empty: they can)."""
    check = _Checker(_named_of(writer), _named_of(reader))
    check.match(writer, reader, "")
    return check.problems


class _Checker:
    def __init__(self, w_named: dict[str, Any], r_named: dict[str, Any]) -> None:
        self.w_named = w_named
        self.r_named = r_named
        self.problems: list[str] = []
        self._seen: set[tuple[int, int]] = set()  # recursive records: check each pair once

    def _resolve(self, schema: Any, named: dict[str, Any]) -> Any:
        # Parsed schemas refer to an already defined named type by its full name, and
        # {"type": "long"} is just "long".
        if isinstance(schema, str):
            return named.get(schema, schema)
        if isinstance(schema, dict):
            inner = schema.get("type")
            if isinstance(inner, list | dict) or (
                inner not in (*_NAMED, "array", "map") and "logicalType" not in schema
            ):
                return self._resolve(inner, named)
        return schema

    def _fits(self, writer: Any, reader: Any) -> bool:
        before = len(self.problems)
        self.match(writer, reader, "")
        fits = len(self.problems) == before
        del self.problems[before:]
        return fits

    def match(self, writer: Any, reader: Any, path: str) -> None:
        w = self._resolve(writer, self.w_named)
        r = self._resolve(reader, self.r_named)
        where = f"field {path!r}: " if path else ""
        if isinstance(w, list):
            # Every branch the writer may have used must be readable.
            for branch in w:
                self.match(branch, r, path)
            return
        if isinstance(r, list):
            if not any(self._fits(w, branch) for branch in r):
                self.problems.append(
                    f"{where}written as {_name(w)}, no branch of {_name(r)} reads it"
                )
            return
        w_type = w["type"] if isinstance(w, dict) else w
        r_type = r["type"] if isinstance(r, dict) else r
        if w_type != r_type:
            if r_type not in _PROMOTIONS.get(w_type, frozenset()):
                self.problems.append(f"{where}written as {w_type}, read as {r_type}")
            return
        if w_type == "array":
            self.match(w["items"], r["items"], f"{path}[]")
        elif w_type == "map":
            self.match(w["values"], r["values"], f"{path}{{}}")
        elif w_type in _NAMED:
            self._named(w, r, path, where)

    def _named(self, w: dict[str, Any], r: dict[str, Any], path: str, where: str) -> None:
        w_short = w["name"].rsplit(".", 1)[-1]
        r_names = {
            r["name"].rsplit(".", 1)[-1],
            *(a.rsplit(".", 1)[-1] for a in r.get("aliases", ())),
        }
        if w_short not in r_names:
            self.problems.append(f"{where}{w['type']} {w['name']} is read as {r['name']}")
            return
        if w["type"] == "fixed" and w["size"] != r["size"]:
            self.problems.append(f"{where}fixed size {w['size']} is read as size {r['size']}")
        elif w["type"] == "enum":
            missing = set(w["symbols"]) - set(r["symbols"])
            if missing and "default" not in r:
                self.problems.append(f"{where}enum symbols {sorted(missing)} unknown to the reader")
        elif w["type"] in ("record", "error"):
            pair = (id(w), id(r))
            if pair in self._seen:
                return
            self._seen.add(pair)
            w_fields = {f["name"]: f for f in w["fields"]}
            for f in r["fields"]:
                name = f["name"]
                sub = f"{path}.{name}" if path else name
                source = w_fields.get(name) or next(
                    (w_fields[a] for a in f.get("aliases", ()) if a in w_fields), None
                )
                if source is not None:
                    self.match(source["type"], f["type"], sub)
                elif "default" not in f:
                    self.problems.append(
                        f"field {sub!r} is not in the writer schema and has no default; "
                        "give it a default in the new schema"
                    )


def _name(schema: Any) -> str:
    if isinstance(schema, list):
        return "[" + ", ".join(_name(s) for s in schema) + "]"
    if isinstance(schema, dict):
        return str(schema.get("name") or schema.get("type"))
    return str(schema)


def _named_of(schema: Any) -> dict[str, Any]:
    # fastavro.parse_schema keeps the named types it met under this key.
    named = schema.get("__named_schemas") if isinstance(schema, dict) else None
    return named if isinstance(named, dict) else {}
