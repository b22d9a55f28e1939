"""Config reload: validate the config directory again and swap the snapshot whole.

Triggered by SIGHUP or, with server.watch_config, by a change of a config file's
mtime or size (polled; no new dependency). A new config is loaded off the event loop
and validated (catalog + snapshot + store names); the old one keeps serving until
the swap, and keeps serving when the new one is invalid.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Collection
from pathlib import Path

from fetcher.api import Snapshot, build_snapshot
from fetcher.catalog import CatalogError, load_catalog

log = logging.getLogger("fetcher.server.reload")

ConfigSignature = tuple[tuple[str, int, int], ...]


def config_signature(directory: str | os.PathLike[str]) -> ConfigSignature:
    """(path, mtime_ns, size) of every file under the config directory, sorted."""
    root = Path(directory)
    entries: list[tuple[str, int, int]] = []
    for sub in ("groups", "services"):
        folder = root / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            try:
                stat = path.stat()
            except OSError:
                continue  # removed while we looked: the next poll sees the new state
            entries.append((f"{sub}/{path.name}", stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(entries))


def load_snapshot(directory: str, store_names: Collection[str]) -> Snapshot:
    """Load, validate and compile a config directory; raises CatalogError."""
    return build_snapshot(load_catalog(directory, set(store_names)))


class ConfigWatcher:
    """Polls the config directory and calls `on_change` when its files change."""

    def __init__(
        self, directory: str, interval_s: float, on_change: Callable[[], object]
    ) -> None:
        self._directory = directory
        self._interval_s = interval_s
        self._on_change = on_change
        self._last: ConfigSignature | None = None

    async def run(self) -> None:
        """Poll until cancelled; the first poll only records the current state."""
        while True:
            try:
                current = await asyncio.to_thread(config_signature, self._directory)
            except OSError as exc:
                log.warning("config watch: cannot read %s: %s", self._directory, exc)
            else:
                if self._last is not None and current != self._last:
                    log.info("config watch: %s changed, reloading", self._directory)
                    result = self._on_change()
                    if asyncio.iscoroutine(result):
                        await result
                self._last = current
            await asyncio.sleep(self._interval_s)


__all__ = ["CatalogError", "ConfigSignature", "ConfigWatcher", "config_signature", "load_snapshot"]
