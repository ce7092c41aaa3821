"""A fresh embedded stack for one benchmark or chaos run, and what runs read from it.

Own free ports and an own temporary data directory (short, because Valkey listens on a
Unix socket inside it), two gateways by default, settings relaxed for load: cheap
password hashing for the bench users, generous rate and connection limits. Users and
conversations are made through the public HTTP APIs, like any client would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from chat_shared.devstack import ServiceProcess, Stack
from chat_shared.keys import FANOUT_GROUP, HISTORY_GROUP, shard_stream
from chat_shared.loopback import free_port
from chat_shared.redis import connect_redis

# Every per-user and per-address limit out of the way: a load generator is one address
# and sends, reconnects and acknowledges far faster than any person.
RELAXED_LIMITS = {
    "CHAT_SEND_RATE": "100000",
    "CHAT_SEND_BURST": "100000",
    "CHAT_FRAME_RATE": "100000",
    "CHAT_FRAME_BURST": "100000",
    "CHAT_READ_RATE": "100000",
    "CHAT_READ_BURST": "100000",
    "CHAT_HANDSHAKES_PER_MINUTE_PER_USER": "1000000",
    "CHAT_HANDSHAKES_PER_MINUTE_PER_ADDRESS": "1000000",
    "CHAT_CONVERSATIONS_PER_MINUTE": "1000000",
    "CHAT_REST_WRITES_PER_SECOND": "100000",
    "CHAT_REST_WRITE_BURST": "100000",
}

# Cheapest hashing the auth service accepts (OWASP's floor), limits out of the way:
# the benchmark measures delivery, not brute-force protection.
LOAD_ENV = {
    **RELAXED_LIMITS,
    "CHAT_ARGON2_TIME_COST": "2",
    "CHAT_ARGON2_MEMORY_KIB": "19456",
    "CHAT_MAX_CONCURRENT_HASHES": "8",
    "CHAT_SIGNUPS_PER_ADDRESS": "1000000",
    "CHAT_ACCESS_TOKEN_TTL_SECONDS": "7200",
    "CHAT_MAX_CONNECTIONS_PER_IP": "1000000",
    "CHAT_MAX_CONNECTIONS_PER_USER": "1000",
    "CHAT_SEND_QUEUE_FRAMES": "20000",
    "CHAT_LOG_LEVEL": "WARNING",
}
PASSWORD = "bench password 0123"  # noqa: S105 -- throwaway users of a throwaway stack
SIGNUP_CONCURRENCY = 8


@dataclass(frozen=True)
class BenchUser:
    id: str
    username: str
    token: str


@dataclass(frozen=True)
class Conversation:
    id: str
    kind: str
    members: tuple[str, ...]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far, from /proc."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return 0.0


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB, from /proc (no psutil here)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class BenchStack:
    gateways: int = 2
    env: Mapping[str, str] = field(default_factory=dict)
    keep_data: bool = False
    sentinel_replicas: int = 2  # the production shape: one server may be down
    data_dir: Path = field(init=False)
    stack: Stack = field(init=False)
    gateway_procs: list[ServiceProcess] = field(default_factory=list)

    def start(self) -> BenchStack:
        self.data_dir = Path(tempfile.mkdtemp(prefix="chatb-", dir="/tmp"))
        self.stack = Stack(
            data_dir=self.data_dir,
            ports={"gateway": free_port(), "auth": free_port(), "history": free_port()},
            extra_env={**LOAD_ENV, **self.env},
            sentinel_replicas=self.sentinel_replicas,
        )
        try:
            self.stack.start(["auth", "history"])
            for _ in range(self.gateways):
                self.add_gateway()
        except BaseException:
            self.stop()
            raise
        return self

    def add_gateway(self) -> ServiceProcess:
        index = len(self.gateway_procs) + 1
        gateway = self.stack.service(
            "gateway",
            port=free_port(),
            instance=f"gateway{index}",
            env={"CHAT_GATEWAY_ID": f"gw{index}"},
        )
        gateway.start().wait_ready()
        self.gateway_procs.append(gateway)
        return gateway

    def stop(self) -> None:
        self.stack.stop()
        if not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # Where things are -------------------------------------------------------------------

    @property
    def auth_url(self) -> str:
        return self.stack.services["auth"].url

    @property
    def history_url(self) -> str:
        return self.stack.services["history"].url

    @property
    def history(self) -> ServiceProcess:
        return self.stack.services["history"]

    @property
    def redis_url(self) -> str:
        return self.stack.redis_url

    @property
    def ws_urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{g.port}/v1/ws" for g in self.gateway_procs]

    def pids(self) -> dict[str, int]:
        """The stack's processes by name (valkey, auth, history, gateway1...)."""
        found = {}
        valkey = self.stack.valkey
        if valkey is not None and valkey.process is not None:
            found["valkey"] = valkey.process.pid
        for name, proc in self.stack.services.items():
            if proc.process is not None and proc.process.poll() is None:
                found[name] = proc.process.pid
        return found

    def gateway_rss_kib(self) -> list[int]:
        return [rss_kib(g.process.pid) for g in self.gateway_procs if g.process is not None]

    # Users and conversations over the public APIs ------------------------------------

    async def users(self, count: int, prefix: str = "b") -> list[BenchUser]:
        limit = asyncio.Semaphore(SIGNUP_CONCURRENCY)
        run = uuid.uuid4().hex[:6]
        async with httpx2.AsyncClient(base_url=self.auth_url, timeout=60) as http:

            async def one(index: int) -> BenchUser:
                username = f"{prefix}{run}{index}"
                async with limit:
                    created = await http.post(
                        "/v1/auth/signup",
                        json={
                            "username": username,
                            "email": f"{username}@bench.test",
                            "password": PASSWORD,
                        },
                    )
                    _expect(created, 201)
                    login = await http.post(
                        "/v1/auth/login", json={"login": username, "password": PASSWORD}
                    )
                    _expect(login, 200)
                return BenchUser(created.json()["id"], username, login.json()["access_token"])

            return list(await asyncio.gather(*(one(i) for i in range(count))))

    async def conversations(
        self, specs: Sequence[tuple[BenchUser, Sequence[BenchUser]]]
    ) -> list[Conversation]:
        """One conversation per (owner, members): direct for two users, else a group."""
        limit = asyncio.Semaphore(16)
        async with httpx2.AsyncClient(base_url=self.history_url, timeout=60) as http:

            async def one(owner: BenchUser, members: Sequence[BenchUser]) -> Conversation:
                others = [m.id for m in members if m.id != owner.id]
                body: dict[str, Any] = {"kind": "direct" if len(others) == 1 else "group"}
                body["members"] = others
                if body["kind"] == "group":
                    body["name"] = f"bench {uuid.uuid4().hex[:6]}"
                async with limit:
                    answer = await http.post(
                        "/v1/conversations",
                        json=body,
                        headers={"Authorization": f"Bearer {owner.token}"},
                    )
                _expect(answer, 200, 201)
                view = answer.json()
                return Conversation(view["id"], view["kind"], tuple(view["members"]))

            return list(await asyncio.gather(*(one(o, m) for o, m in specs)))

    # What is left to do at the end -----------------------------------------------------

    async def stream_lag(self) -> dict[str, dict[str, int]]:
        """Entries each consumer group has pending or not yet read, over the shards."""
        from chat_history.lag import group_lag  # the history service's own definition

        shards = int(self.stack.extra_env.get("CHAT_INGEST_SHARDS", "16"))
        streams = [shard_stream(n) for n in range(shards)]
        redis = connect_redis(self.stack.settings())
        try:
            lag = {}
            for group in (HISTORY_GROUP, FANOUT_GROUP):
                found = await group_lag(redis, streams, group)
                lag[group] = {"pending": found.pending, "unread": found.unread}
            return lag
        finally:
            await redis.aclose()

    def stored_messages(self) -> int:
        """Rows in the SQLite message table (read-only; WAL lets us read alongside)."""
        path = self.data_dir / "history.db"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            (count,) = conn.execute("SELECT count(*) FROM messages").fetchone()
            return int(count)
        finally:
            conn.close()


def _expect(response: httpx2.Response, *statuses: int) -> None:
    if response.status_code not in statuses:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
