"""The demo definitions compile to the checked-in demo catalog, byte for byte, every time."""

from __future__ import annotations

from pathlib import Path

from fetcher.catalog import load_catalog
from fetcher.compiler import compile_repo

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "config" / "demo"
DEFINITIONS = ROOT / "config" / "demo_features"


def _files(root: Path, *subdirs: str) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for sub in subdirs
        for p in sorted((root / sub).rglob("*"))
        if p.is_file()
    }


def test_demo_definitions_compile_to_config_demo(tmp_path: Path) -> None:
    report = compile_repo(DEFINITIONS, tmp_path)
    assert report.ok, [p.render() for p in report.errors]
    assert not report.warnings
    compiled = _files(tmp_path, "groups", "services")
    expected = _files(DEMO, "groups", "services")
    assert sorted(compiled) == sorted(expected)
    for rel, data in expected.items():
        assert compiled[rel] == data, rel
    assert load_catalog(tmp_path).version == load_catalog(DEMO).version


def test_compiling_twice_is_byte_identical(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert compile_repo(DEFINITIONS, first).ok
    assert compile_repo(DEFINITIONS, second).ok
    a = _files(first, "groups", "services", "metadata")
    assert set(a) >= {"metadata/lineage.json", "metadata/dependencies.json",
                      "metadata/version_manifest.json"}
    assert a == _files(second, "groups", "services", "metadata")


def test_recompiling_removes_stale_catalog_files(tmp_path: Path) -> None:
    (tmp_path / "groups").mkdir()
    (tmp_path / "groups" / "gone.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("kept")
    assert compile_repo(DEFINITIONS, tmp_path).ok
    assert not (tmp_path / "groups" / "gone.json").exists()
    assert (tmp_path / "notes.txt").read_text() == "kept"
