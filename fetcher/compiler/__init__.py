"""The compiler: Python feature definitions (fetcher.definitions) -> the catalog `fetcher
serve` loads, plus metadata (lineage, dependencies, versions); docs/compiler.md.

It owns discovery of a definition repository (or of Chronon's compiled configs), the
validation stages (schema, consistency, dependencies, evolution, performance), versions,
`fetcher diff`, the output and its final check with fetcher.catalog.load_catalog. The
serving path (server, api, engine, cache) never imports it; an import-linter contract says so.
"""

from fetcher.compiler._chronon import compile_chronon
from fetcher.compiler._cli import (
    EXIT_ERRORS,
    EXIT_OK,
    EXIT_USAGE,
    run_chronon_compile,
    run_compile,
)
from fetcher.compiler._compile import CompiledObject, CompileReport, UsageError, compile_repo
from fetcher.compiler._diff import run_diff
from fetcher.compiler._performance import Limits
from fetcher.compiler._problems import Problem, Stage

__all__ = [
    "EXIT_ERRORS",
    "EXIT_OK",
    "EXIT_USAGE",
    "CompileReport",
    "CompiledObject",
    "Limits",
    "Problem",
    "Stage",
    "UsageError",
    "compile_chronon",
    "compile_repo",
    "run_chronon_compile",
    "run_compile",
    "run_diff",
]
