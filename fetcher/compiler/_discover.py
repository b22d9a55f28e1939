"""Discovery: import every definition file of a repository, collect its GroupBys and Joins.

Each file under `<repo>/group_bys/` and `<repo>/joins/` is imported from its path under a
private module name (so two repositories, or two compiles, never share modules); the
repository is on sys.path meanwhile, so definition files may import each other. An import
that fails is a problem naming the file and line, never a traceback.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from fetcher.compiler._problems import Problem, Stage
from fetcher.definitions import GroupBy, Join
from fetcher.quoting import cut

FOLDERS: dict[str, type[GroupBy] | type[Join]] = {"group_bys": GroupBy, "joins": Join}
_counter = itertools.count()


@dataclass(frozen=True, slots=True)
class Definition:
    """A collected GroupBy or Join: its served name and where it was defined."""

    kind: str  # "group_by" or "join"
    name: str
    obj: GroupBy | Join
    file: str  # relative to the repository, "/"-separated
    line: int  # of the assignment that bound it
    variable: str


@dataclass(frozen=True, slots=True)
class Discovery:
    """What discovery found: the definitions in (file, line) order, and its problems."""

    definitions: tuple[Definition, ...]
    problems: tuple[Problem, ...]


def definition_files(repo: Path) -> list[Path]:
    """The definition files of a repository, sorted (names starting with _ are helpers)."""
    files: list[Path] = []
    for folder in FOLDERS:
        root = repo / folder
        if root.is_dir():
            files.extend(p for p in root.rglob("*.py") if not p.name.startswith("_"))
    return sorted(files)


def _default_name(rel: Path, variable: str) -> str:
    # group_bys/risk/users.py, user_profile -> risk.users.user_profile
    parts = rel.with_suffix("").parts[1:]
    return ".".join((*parts, variable))


def _assignments(source: str) -> dict[str, int]:
    """Module-level variable -> line of its last plain assignment."""
    lines: dict[str, int] = {}
    for node in ast.parse(source).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name):
                lines[target.id] = node.lineno
    return lines


def _failure(repo: Path, rel: str, exc: BaseException) -> Problem:
    """The problem of a definition file that cannot be imported: the innermost repo line."""
    file, line = rel, 1
    if isinstance(exc, SyntaxError) and exc.filename:
        file, line = _relative(repo, exc.filename) or rel, exc.lineno or 1
    else:
        for frame in traceback.extract_tb(exc.__traceback__):
            inside = _relative(repo, frame.filename)
            if inside is not None:
                file, line = inside, frame.lineno or 1
    text = cut(f"{type(exc).__name__}: {exc}")
    where = "" if file == rel else f" (imported by {rel})"
    return Problem(
        Stage.DISCOVERY,
        file,
        line,
        "",
        "",
        f"cannot import the definition file{where}: {text}",
        "correct the Python at that line; a definition file must import without errors",
    )


def _relative(repo: Path, filename: str) -> str | None:
    try:
        return Path(filename).resolve().relative_to(repo).as_posix()
    except ValueError:
        return None


def _in_repo(repo: Path, module: ModuleType) -> bool:
    """A module (or namespace package, which has no __file__) loaded from the repo."""
    places = [getattr(module, "__file__", None), *(getattr(module, "__path__", None) or ())]
    return any(isinstance(p, str) and _relative(repo, p) is not None for p in places)


@contextmanager
def _repo_on_path(repo: Path) -> Iterator[None]:
    """The repo importable while discovering; its modules forgotten afterwards."""
    before = set(sys.modules)
    sys.path.insert(0, str(repo))
    try:
        yield
    finally:
        sys.path.remove(str(repo))
        # Decide first, delete after: a namespace package reads its parent to list its path.
        forget = [
            name for name in set(sys.modules) - before
            if name.startswith("_fetcher_definition_") or _in_repo(repo, sys.modules[name])
        ]
        for name in forget:
            del sys.modules[name]
        importlib.invalidate_caches()


def _import(path: Path) -> ModuleType:
    name = f"_fetcher_definition_{next(_counter)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses defined in the file look their module up
    spec.loader.exec_module(module)
    return module


def discover(repo: Path) -> Discovery:
    """Import every definition file under `repo` and collect what they define."""
    repo = repo.resolve()
    found: list[Definition] = []
    problems: list[Problem] = []
    with _repo_on_path(repo):
        for path in definition_files(repo):
            rel_path = path.relative_to(repo)
            rel = rel_path.as_posix()
            try:
                source = path.read_text(encoding="utf-8")
                assigned = _assignments(source)
                module = _import(path)
            except Exception as exc:  # anything a definition file raises is its problem
                problems.append(_failure(repo, rel, exc))
                continue
            wanted = FOLDERS[rel_path.parts[0]]
            kind = "group_by" if wanted is GroupBy else "join"
            seen: dict[int, str] = {}
            for variable, line in sorted(assigned.items(), key=lambda item: item[1]):
                obj = module.__dict__.get(variable)
                if isinstance(obj, GroupBy | Join) and not isinstance(obj, wanted):
                    other = "joins" if isinstance(obj, Join) else "group_bys"
                    problems.append(
                        Problem(
                            Stage.DISCOVERY, rel, line, variable, "",
                            f"a {type(obj).__name__} in {rel_path.parts[0]}/ is not compiled",
                            f"move it to a file under {other}/", warning=True,
                        )
                    )
                    continue
                if not isinstance(obj, GroupBy | Join):
                    continue
                if id(obj) in seen:
                    problems.append(
                        Problem(
                            Stage.DISCOVERY, rel, line, variable, "",
                            f"is the same object as {seen[id(obj)]}: compiled once, as that",
                            "bind each definition to one variable", warning=True,
                        )
                    )
                    continue
                seen[id(obj)] = variable
                name = obj.name if obj.name is not None else _default_name(rel_path, variable)
                found.append(Definition(kind, name, obj, rel, line, variable))
    return Discovery(tuple(found), tuple(problems))
