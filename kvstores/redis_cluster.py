"""RedisClusterStore: the RedisStore layout on a Redis Cluster.

Same keys, members and write script as RedisStore (docs/storage-layout.md); reads are
one GET (latest key) or ZRANGE per lookup. The hash tag in every key keeps an entity's
versions and its latest copy in one slot, so every command has one owner. A batch is
split by owner: one pipeline per node, sent to all nodes concurrently, so a call costs
one round trip per node touched whatever its size.

The slot map (CLUSTER SLOTS) is fetched on the first call, not at construction, and
fetched again on the next call when that failed. Nodes restarted in place need no
refresh: broken connections are reopened on their next use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.maint_notifications import MaintNotificationsConfig

from kvstores.base import StoreError
from kvstores.redis import _BACKEND_ERRORS, BaseRedisStore, Command, _describe

__all__ = ["RedisClusterStore"]


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _CheckedConnection(Connection):
    """A cluster node connection that reconnects a socket gone stale while pooled."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        """Send after dropping a pooled socket the server closed or that holds stray data."""
        # RedisCluster's per-node pools reuse a free connection without the check
        # the standalone pool makes, so a connection idle across a node restart
        # failed its next call. Same check as redis-py's ConnectionPool: a
        # non-blocking read that sees EOF or unread bytes means "reconnect".
        # Only when check_health is set: redis-py clears it for the sends inside
        # an exchange already under way (the connect handshake pipelines two
        # commands, and the first reply would look like stray bytes).
        if check_health and self.is_connected:
            try:
                stale = await self.can_read()
            except (RedisConnectionError, OSError):
                stale = True
            if stale:
                await self.disconnect()
        await super().send_packed_command(command, check_health)


class _CheckedSSLConnection(_CheckedConnection, SSLConnection):
    """_CheckedConnection over TLS (rediss+cluster://)."""


class RedisClusterStore(BaseRedisStore[RedisCluster]):
    """KVStore over a Redis Cluster: one pipeline per node per call; connects lazily."""

    kind = "redis_cluster"

    def __init__(
        self,
        nodes: Sequence[tuple[str, int]],
        *,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        timeout_s: float = 0.1,
        write_timeout_s: float = 5.0,
        max_connections: int = 64,
        max_versions: int | None = 16,
        key_prefix: str = "ft",
        latest_keys: bool = True,
        latest_fallback: bool = True,
    ) -> None:
        """`nodes`: (host, port) of one or more cluster nodes; the rest are discovered.

        max_connections bounds the calls in flight per client (reads and writes each
        have one), hence the connections per node; a call waits for a turn within its
        timeout, like RedisStore's blocking pool.
        """
        if not nodes:
            raise ValueError("nodes: give at least one (host, port) of the cluster")
        self.nodes = tuple((host, int(port)) for host, port in nodes)
        self.username = username
        self.password = password
        self.ssl = ssl
        # id(client) -> its semaphore (see _make_client); both clients live as
        # long as the store.
        self._turns: dict[int, asyncio.Semaphore] = {}
        scheme = "rediss+cluster" if ssl else "redis+cluster"
        url = f"{scheme}://" + ",".join(_address(host, port) for host, port in self.nodes)
        super().__init__(
            url,
            timeout_s=timeout_s,
            write_timeout_s=write_timeout_s,
            max_connections=max_connections,
            max_versions=max_versions,
            key_prefix=key_prefix,
            latest_keys=latest_keys,
            latest_fallback=latest_fallback,
        )

    def _make_client(self, timeout_s: float) -> RedisCluster:
        # Constructing RedisCluster does no I/O; the slot map is fetched by
        # initialize() on the first call. No retries: redis-py's cluster retry
        # closes every connection and sleeps 0.25 s before trying again, which a
        # 100 ms request cannot afford; the caller serves ERROR instead.
        # max_connections per node is a hard cap in RedisCluster (it raises
        # rather than waits), so the semaphore in _execute keeps us below it.
        # Maintenance notifications off, as in RedisStore.
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self.nodes],
            username=self.username,
            password=self.password,
            ssl=self.ssl,
            max_connections=self.max_connections,
            retry=Retry(NoBackoff(), 0),
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )
        # RedisCluster takes no connection class; nodes are built from this dict
        # (get_connection_kwargs returns it, not a copy) and the startup nodes
        # already exist, so both are switched to the checked connection.
        checked = _CheckedSSLConnection if self.ssl else _CheckedConnection
        client.get_connection_kwargs()["connection_class"] = checked
        for node in client.startup_nodes:
            node.connection_class = checked
        self._turns[id(client)] = asyncio.Semaphore(self.max_connections)
        return client

    async def _execute(self, client: RedisCluster, commands: Sequence[Command]) -> list[Any]:
        async with self._turns[id(client)]:
            # No I/O once the slot map is known; after a failed first call (or a
            # topology error) this is where the map is fetched again.
            await client.initialize()
            pipe: Any = client.pipeline(transaction=False)  # ClusterPipeline.reset is untyped
            try:
                # Route by our own slot lookup: redis-py would otherwise parse
                # every command to find its key (about 1.5x the CPU per batch).
                # The pipeline groups commands per node and sends each group as
                # one write; a MOVED reply is retried by redis-py on the new owner.
                owner = client.get_node_from_key
                for command in commands:
                    key = command[3] if command[0] == "EVALSHA" else command[1]
                    pipe.execute_command(*command, target_nodes=owner(key))
                replies: list[Any] = await pipe.execute()
                return replies
            finally:
                await pipe.reset()

    async def ping(self) -> None:
        """Return when every master answers PING within the timeout; raise StoreError otherwise."""
        self._check_open()
        client = self._client
        try:
            async with asyncio.timeout(self.timeout_s), self._turns[id(client)]:
                await client.initialize()
                await client.ping(target_nodes=RedisCluster.PRIMARIES)
        except _BACKEND_ERRORS as exc:
            raise StoreError(f"{self._where()}: ping failed: {_describe(exc)}") from exc

    def _where(self) -> str:
        # The seed nodes, never the password.
        return "redis cluster " + ",".join(_address(host, port) for host, port in self.nodes)
