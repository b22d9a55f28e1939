"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvstores import KVStore, open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[KVStore]:
    """An embedded (LMDB) store in the test's own directory, closed after the test."""
    s = open_store(f"embedded://{tmp_path / 'store.lmdb'}?sync=false")
    yield s
    await s.close()
