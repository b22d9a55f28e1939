"""load_settings: the settings file and env overrides, read, then validated in one pass."""

from __future__ import annotations

import os
from collections.abc import Mapping

from fetcher.config._settings import (
    Settings,
    SettingsError,
    _Collector,
    _Raw,
    _read_env,
    _read_file,
)
from fetcher.config._validate import build_settings


def load_settings(
    path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read settings from the TOML file at `path` (None: defaults only), then env overrides."""
    env = os.environ if env is None else env
    c = _Collector()
    raw = _Raw()
    if path is not None:
        _read_file(path, raw, c)
    _read_env(env, raw, c)
    settings = build_settings(raw, env, str(path) if path else "settings", c)
    if c.problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(c.problems))
    return settings
