"""The embedded stack behind ``make run``, also used by the end-to-end tests.

Starts the Redis topology ``CHAT_REDIS_MODE`` names (one Valkey, a cluster, or a
Sentinel set) unless its servers are given, and, with
``CHAT_STORE=cassandra`` and no ``CHAT_CASSANDRA_HOSTS``, a local Cassandra node whose
data lives under the data directory; applies the store migrations, then runs each
service as its own process, the way a cluster would. Ctrl-C (SIGINT) or SIGTERM stops
the services first, then Valkey, which flushes its AOF, then the Cassandra node: an
acknowledged message survives the restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from chat_shared.cassandra_node import CassandraNode
from chat_shared.embedded_redis import EmbeddedValkey
from chat_shared.redis_topologies import LocalCluster, LocalSentinel
from chat_shared.serve import SERVICES
from chat_shared.settings import ChatSettings
from chat_shared.store.migrate import SERVICE_PACKAGES, migrate


@dataclass
class ServiceProcess:
    """One service under uvicorn, in its own process group so kill -9 is a real crash."""

    name: str
    port: int
    env: Mapping[str, str]
    host: str = "127.0.0.1"
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServiceProcess:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chat_shared.serve",
                self.name,
                "--host",
                self.host,
                "--port",
                str(self.port),
            ],
            env={**os.environ, **self.env},
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last_error = "not started"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
            try:
                if httpx2.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
                last_error = "not ready"
            except httpx2.HTTPError as exc:
                last_error = type(exc).__name__
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after {timeout}s ({last_error})")

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Stack:
    data_dir: Path
    ports: Mapping[str, int] = field(
        default_factory=lambda: {name: port for name, (_, port) in SERVICES.items()}
    )
    redis_url: str = ""
    extra_env: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    valkey: EmbeddedValkey | None = None
    redis_cluster: LocalCluster | None = None
    redis_sentinel: LocalSentinel | None = None
    # One replica on a laptop; the failover tests want two, as in production, so that
    # with CHAT_REDIS_MIN_REPLICAS=1 sends are still acknowledged while one server is down.
    sentinel_replicas: int = 1

    @property
    def redis_maxmemory(self) -> str:
        """Every local server is bounded and refuses writes when full (noeviction),
        as in production: a full Redis must say no, never drop a stream entry."""
        return self.settings().embedded_redis_maxmemory

    cassandra: CassandraNode | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        auth = f"http://{self.host}:{self.ports['auth']}"
        history = f"http://{self.host}:{self.ports['history']}"
        gateway_port = self.ports["gateway"]
        # The web client is served by the gateway and calls auth and history from the
        # browser: allow the gateway's origins (CORS) and tell the client where they are.
        web_origins = [f"http://{host}:{gateway_port}" for host in (self.host, "localhost")]
        return {
            "CHAT_DATA_DIR": str(self.data_dir),
            "CHAT_REDIS_URL": self.redis_url,
            "CHAT_JWKS_URL": f"{auth}/.well-known/jwks.json",
            "CHAT_HISTORY_URL": history,
            "CHAT_AUTH_URL": auth,
            "CHAT_PUBLIC_AUTH_URL": auth,
            "CHAT_PUBLIC_HISTORY_URL": history,
            "CHAT_CORS_ORIGINS": ",".join(dict.fromkeys(web_origins)),
            **self.extra_env,
        }

    def start_redis(self) -> None:
        """Start the configured Redis topology locally unless its servers are named:
        one Valkey, a three-primary cluster, or a primary, its replicas and three
        Sentinels, all under the data directory."""
        named = {**os.environ, **self.extra_env}
        mode = named.get("CHAT_REDIS_MODE", "single")
        if mode == "cluster" and not named.get("CHAT_REDIS_NODES"):
            self.redis_cluster = LocalCluster(
                self.data_dir / "redis-cluster", maxmemory=self.redis_maxmemory
            ).start()
            self.extra_env = {**self.extra_env, "CHAT_REDIS_NODES": self.redis_cluster.nodes}
        elif mode == "sentinel" and not named.get("CHAT_REDIS_SENTINELS"):
            sentinel = LocalSentinel(
                self.data_dir / "redis-sentinel",
                replicas=self.sentinel_replicas,
                maxmemory=self.redis_maxmemory,
            )
            self.redis_sentinel = sentinel.start()
            self.extra_env = {
                **self.extra_env,
                "CHAT_REDIS_SENTINELS": self.redis_sentinel.sentinel_addresses,
                "CHAT_REDIS_MASTER": self.redis_sentinel.master_name,
            }
        elif mode == "single" and not self.redis_url:
            self.valkey = EmbeddedValkey(self.data_dir, maxmemory=self.redis_maxmemory).start()
            self.redis_url = self.valkey.url

    def redis_description(self) -> str:
        named = {**os.environ, **self.extra_env}
        mode = named.get("CHAT_REDIS_MODE", "single")
        if mode == "cluster":
            return f"cluster {named.get('CHAT_REDIS_NODES', '')}"
        if mode == "sentinel":
            return f"sentinel {named.get('CHAT_REDIS_SENTINELS', '')}"
        return self.redis_url

    def start_store(self) -> None:
        """Start a Cassandra node when the store is Cassandra and no cluster is named."""
        named = {**os.environ, **self.extra_env}
        if named.get("CHAT_STORE") != "cassandra" or named.get("CHAT_CASSANDRA_HOSTS"):
            return
        self.cassandra = CassandraNode(self.data_dir / "cassandra").start()
        self.extra_env = {
            **self.extra_env,
            "CHAT_CASSANDRA_HOSTS": self.cassandra.host,
            "CHAT_CASSANDRA_PORT": str(self.cassandra.native_port),
        }

    def settings(self) -> ChatSettings:
        """The settings the services will read: the environment, then ``extra_env``."""
        fields = ChatSettings.model_fields
        values: dict[str, Any] = {
            key[len("CHAT_") :].lower(): value
            for key, value in self.extra_env.items()
            if key.startswith("CHAT_") and key[len("CHAT_") :].lower() in fields
        }
        if self.redis_url:
            values["redis_url"] = self.redis_url
        return ChatSettings(**{**values, "data_dir": self.data_dir})

    def migrate(self) -> None:
        migrate(self.settings(), sorted(SERVICE_PACKAGES))

    def service(
        self,
        name: str,
        *,
        port: int | None = None,
        env: Mapping[str, str] = {},
        instance: str | None = None,
    ) -> ServiceProcess:
        """Create (not start) a service process; several gateways need ``instance``."""
        key = instance or name
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        proc = ServiceProcess(
            name=name,
            port=port or self.ports[name],
            host=self.host,
            env={**self.env(), **env},
            log_path=logs / f"{key}.log",
        )
        self.services[key] = proc
        return proc

    def start(self, names: list[str] | None = None) -> Stack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.start_redis()
        self.start_store()
        self.migrate()
        order = names or ["auth", "history", "gateway"]
        for name in order:
            self.service(name).start()
        for name in order:
            self.services[name].wait_ready()
        return self

    def stop(self) -> None:
        for proc in reversed(list(self.services.values())):
            proc.signal(signal.SIGTERM)
        for proc in self.services.values():
            proc.stop()
        for redis in (self.valkey, self.redis_cluster, self.redis_sentinel):
            if redis is not None:
                redis.stop()
        if self.cassandra is not None:
            self.cassandra.stop()


def main() -> int:
    settings = ChatSettings()
    stack = Stack(data_dir=settings.data_dir.resolve(), redis_url=settings.redis_url)
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        stack.start()
        gateway = f"http://{stack.host}:{stack.ports['gateway']}"
        print(
            f"\nchat is running (data in {stack.data_dir})\n"
            f"  web client     {gateway}/\n"
            f"  gateway        {gateway}/docs   websocket ws://{stack.host}:{stack.ports['gateway']}/v1/ws\n"
            f"  auth           http://{stack.host}:{stack.ports['auth']}/docs\n"
            f"  history        http://{stack.host}:{stack.ports['history']}/docs\n"
            f"  redis          {stack.redis_description()}\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stopping:
            for name, proc in stack.services.items():
                if proc.process is not None and proc.process.poll() is not None:
                    print(f"{name} exited with {proc.process.returncode}; stopping", flush=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        print("stopping…", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
