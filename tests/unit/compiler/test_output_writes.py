"""Recompiling into a served config folder: a server watching it (watch_config) may load the
folder between any two of the compiler's file operations. Every such state must be refused
by the catalog loader (the server keeps the old catalog) or serve every group and service
the old and new catalogs share, reading every row stored with any of their schemas."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fetcher.catalog import Catalog, CatalogError, load_catalog
from fetcher.compiler import compile_repo
from fetcher.types import FeatureType
from tests.unit.compiler.repo_support import write_repo

SERVED = ("groups", "services")
GROUP = "risk.users.users"

_SAMPLE: dict[FeatureType, Any] = {
    FeatureType.INT64: 7, FeatureType.DOUBLE: 0.5, FeatureType.STRING: "s",
    FeatureType.BOOL: True, FeatureType.BYTES: b"b", FeatureType.INT64_LIST: [1],
    FeatureType.DOUBLE_LIST: [0.5], FeatureType.STRING_LIST: ["s"], FeatureType.BOOL_LIST: [True],
}


def _definitions(columns: Mapping[str, str], name: str | None = None) -> dict[str, str]:
    decl = ", ".join(f'"{k}": {v}' for k, v in {"user_id": '"int64"', **columns}.items())
    rename = f"name={name!r}, " if name else ""
    return {
        "group_bys/risk/users.py": f"""
users = GroupBy(keys=["user_id"], {rename}online=True,
                sources=[EntitySource(snapshot_table="users",
                                      query=Query(selects={["user_id", *columns]!r}),
                                      columns={{{decl}}})])
""",
        "joins/risk/scoring.py": """
from group_bys.risk.users import users

scoring = Join(left={"user_id": "int64"}, right_parts=[JoinPart(users, prefix="u_")],
               online=True)
""",
    }


V1 = {"age": '"int32"'}
V2 = {"age": '"int64"', "country": 'Column("string", nullable=True)'}  # widened, added
V3 = {**V2, "tier": 'Column("int64", default=3)'}  # a third schema
STEPS = [V2, V3, V3]  # the last one renamed (the migration stage 4 proposes)


def _served_files(out: Path) -> dict[str, bytes]:
    return {f"{sub}/{p.name}": p.read_bytes() for sub in SERVED if (out / sub).is_dir()
            for p in sorted((out / sub).iterdir()) if p.is_file()}


@dataclass
class Recorder:
    """The served files of `out` after every file operation under it (while `out` is set)."""

    out: Path | None = None
    states: list[dict[str, bytes]] = field(default_factory=list)
    in_place: list[str] = field(default_factory=list)

    def under_out(self, path: Any) -> bool:
        return self.out is not None and Path(path).resolve().is_relative_to(self.out.resolve())


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """Spies on the file operations of the compiler (writes, renames, removals)."""
    rec = Recorder()

    def spy(real: Callable[..., Any], target_of: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            if rec.out is not None and rec.under_out(target_of(*args)):
                rec.states.append(_served_files(rec.out))
            return result
        return call

    real_write = Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        # A file written in place can be read half-written by a poll: config files must be
        # renamed into place.
        if rec.under_out(self) and self.parent.name in SERVED and self.suffix in (".json", ".avsc"):
            rec.in_place.append(f"{self.parent.name}/{self.name}")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", spy(write_bytes, lambda self, *_: self))
    monkeypatch.setattr(Path, "unlink", spy(Path.unlink, lambda self, *_: self))
    monkeypatch.setattr(os, "replace", spy(os.replace, lambda src, dst, *_: dst))
    monkeypatch.setattr(os, "rename", spy(os.rename, lambda src, dst, *_: dst))
    yield rec


def _stored_rows(catalog: Catalog, rows: dict[str, list[bytes]]) -> None:
    for name, group in catalog.groups.items():
        record = {f.name: _SAMPLE[f.type] for f in group.features}
        rows.setdefault(name, []).append(catalog.codecs[name].encode(record))


def _check_state(files: dict[str, bytes], tmp: Path, old: Catalog, new: Catalog,
                 rows: Mapping[str, list[bytes]]) -> None:
    folder = tmp / f"state{len(list(tmp.iterdir()))}"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    try:
        state = load_catalog(folder)
    except CatalogError:
        return  # refused: the server keeps serving the old catalog
    for kind in ("groups", "services"):
        shared = set(getattr(old, kind)) & set(getattr(new, kind))
        missing = shared - set(getattr(state, kind))
        assert not missing, f"{sorted(files)}: {kind} {sorted(missing)} not served"
    for name in set(old.groups) & set(new.groups):
        for data in rows[name]:
            state.codecs[name].decode(data)  # raises DecodeError for an unknown writer schema


def test_every_state_of_a_recompile_is_refused_or_serves_what_it_served(
    tmp_path: Path, recorder: Recorder,
) -> None:
    repo, out, scratch = tmp_path / "repo", tmp_path / "out", tmp_path / "states"
    scratch.mkdir()
    write_repo(repo, _definitions(V1))
    assert compile_repo(repo, out).ok
    rows: dict[str, list[bytes]] = {}
    for n, columns in enumerate(STEPS):
        old = load_catalog(out)
        _stored_rows(old, rows)
        write_repo(repo, _definitions(columns, f"{GROUP}_v2" if n == 2 else None))
        recorder.out, recorder.states = out, []
        report = compile_repo(repo, out)
        recorder.out = None
        assert report.ok, [p.render() for p in report.errors]
        new = load_catalog(out)
        assert recorder.states, "no file operation recorded"
        for files in recorder.states:
            _check_state(files, scratch, old, new, rows)
    assert not recorder.in_place, f"written in place, not renamed into place: {recorder.in_place}"
