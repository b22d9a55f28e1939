"""open_store: URL schemes, paths and query-string options (no network: Redis is lazy)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kvstores import EmbeddedStore, RedisStore, open_store


async def test_embedded_relative_path_is_under_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("embedded://data/demo.lmdb")
    assert isinstance(store, EmbeddedStore)
    assert store.path == "data/demo.lmdb"
    assert (tmp_path / "data" / "demo.lmdb" / "data.mdb").exists()
    await store.close()


async def test_embedded_absolute_path_and_options(tmp_path: Path) -> None:
    url = f"embedded://{tmp_path}/abs.lmdb?map_size_mb=32&max_versions=4&max_readers=50&sync=false"
    store = open_store(url)
    assert isinstance(store, EmbeddedStore)
    assert os.path.isabs(store.path) and store.path == f"{tmp_path}/abs.lmdb"
    assert store.max_versions == 4
    assert store._env.info()["map_size"] == 32 << 20
    assert store._env.info()["max_readers"] == 50
    await store.close()
    reader = open_store(f"embedded://{tmp_path}/abs.lmdb?readonly=true&max_versions=none")
    assert isinstance(reader, EmbeddedStore)
    assert reader.readonly and reader.max_versions is None
    await reader.close()


async def test_redis_urls_and_options() -> None:
    store = open_store(
        "redis://127.0.0.1:1/3?max_connections=8&max_versions=2&key_prefix=fx", timeout_s=0.05
    )
    assert isinstance(store, RedisStore)
    assert store.url == "redis://127.0.0.1:1/3"  # our options stripped
    assert (store.timeout_s, store.max_connections, store.max_versions) == (0.05, 8, 2)
    assert store.redis_key("users", b"\x01") == b"fx:users:{\x01}"
    assert store.latest_key("users", b"\x01") == b"fx:users:{\x01}:latest"
    assert (store.latest_keys, store.latest_fallback) == (True, True)  # the defaults
    await store.close()

    plain = open_store("redis://127.0.0.1:1/0?latest_keys=false&latest_fallback=no")
    assert isinstance(plain, RedisStore)
    assert (plain.latest_keys, plain.latest_fallback) == (False, False)
    await plain.close()

    tls = open_store("rediss://cache.example:6380/0?timeout_s=0.5&write_timeout_s=9")
    assert isinstance(tls, RedisStore)
    assert (tls.timeout_s, tls.write_timeout_s) == (0.5, 9.0)
    assert tls.redis_key("d", b"k") == b"ft:d:{k}"
    await tls.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/y", "unknown scheme 'mysql'.*embedded://, redis://, rediss://"),
        ("data/demo.lmdb", "unknown scheme '\\(none\\)'"),
        ("embedded://", "no path"),
        ("embedded://x.lmdb?size=1", "unknown option 'size'.*map_size_mb, max_readers"),
        ("redis://h:1/0?map_size_mb=1", "unknown option 'map_size_mb'.*max_connections"),
        ("redis://h:1/0?max_connections=0", "option 'max_connections'.*>= 1"),
        ("redis://h:1/0?timeout_s=abc", "option 'timeout_s'"),
        ("embedded://x.lmdb?readonly=maybe", "option 'readonly'.*true or false"),
        ("redis://h:1/0?latest_keys=2", "option 'latest_keys'.*true or false"),
        ("redis://h:1/0?max_versions=2&max_versions=3", "given twice"),
    ],
)
def test_bad_urls_name_the_problem(url: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message) as info:
        open_store(url.replace("x.lmdb", f"{tmp_path}/x.lmdb"))
    assert "store URL" in str(info.value)
