"""Generated valid definitions compile, and `fetcher.catalog.load_catalog` accepts the output
with exactly the features, types and keys the definitions describe."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from fetcher.catalog import load_catalog
from fetcher.compiler import compile_repo
from fetcher.compiler._types import feature_type
from tests.unit.compiler.generated_repo import (
    RepoSpec,
    feature_names,
    group_name,
    join_name,
    key_names,
    part_prefix,
    repo_files,
    repo_st,
)
from tests.unit.compiler.repo_support import write_repo


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(repo_st())
def test_generated_definitions_compile_to_a_loadable_catalog(spec: RepoSpec) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = write_repo(Path(tmp) / "repo", repo_files(spec))
        report = compile_repo(repo, Path(tmp) / "out")
        assert report.ok, [e.render() for e in report.errors]
        catalog = load_catalog(Path(tmp) / "out")
    assert set(catalog.groups) == {group_name(i) for i in range(len(spec.groups))}
    for i, g in enumerate(spec.groups):
        served = catalog.groups[group_name(i)]
        expected = [(name, feature_type(kind), nullable)
                    for name, (kind, nullable) in zip(feature_names(g), g.columns, strict=True)]
        assert [(f.name, f.type, f.nullable) for f in served.features] == expected
        assert [k.name for k in served.keys] == key_names(i, g)
        assert served.online is g.online
    for j, parts in enumerate(spec.joins):
        service = catalog.services[join_name(j)]
        assert [(x.group, x.prefix) for x in service.joins] == [
            (group_name(i), part_prefix(i)) for i in parts]
