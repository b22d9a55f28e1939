"""A package's names imported on first use: a module `__getattr__` (PEP 562).

fetcher.api and fetcher.server export their grpc-importing names this way: a supervisor
builds snapshots and starts workers before it forks, when grpc must not be loaded yet.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """The `__getattr__` of `package`: name -> the attribute of `modules[name]`, imported now."""

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
