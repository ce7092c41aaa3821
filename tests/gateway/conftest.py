"""A real gateway (uvicorn, sans-I/O websockets) in the test's event loop, on Valkey."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from redis.asyncio import Redis

from chat_gateway.app import create_app
from chat_gateway.settings import GatewaySettings
from chat_shared.keys import ingest_shard_for, shard_seq
from chat_shared.membership import MembershipCache
from chat_shared.serve import uvicorn_options
from tests.support.ports import free_port
from tests.support.tokens import TokenMinter

SHARDS = 4


class RunningGateway:
    def __init__(
        self, server: uvicorn.Server, task: asyncio.Task[None], port: int, settings: GatewaySettings
    ) -> None:
        self.server, self.task, self.port, self.settings = server, task, port, settings
        self.ws_url = f"ws://127.0.0.1:{port}/v1/ws"
        self.http_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 15)


GatewayFactory = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def start_gateway(
    redis_url: str, redis: Redis, minter: TokenMinter, tmp_path: Path
) -> AsyncIterator[GatewayFactory]:
    running: list[RunningGateway] = []

    async def start(**overrides: Any) -> RunningGateway:
        port = free_port()
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "data_dir": tmp_path,
            "ingest_shards": SHARDS,
            "gateway_id": f"gw-{port}",
            "history_url": "http://127.0.0.1:9",
            "fanout_lease_seconds": 1.5,
            "log_level": "WARNING",
            # Tests send in bursts; the rate-limit tests set their own limits.
            "send_rate": 10_000,
            "send_burst": 10_000,
            "frame_rate": 10_000,
            "frame_burst": 10_000,
            "read_rate": 10_000,
            "read_burst": 10_000,
            "handshakes_per_minute_per_user": 100_000,
        }
        values.update(overrides)
        settings = GatewaySettings(**values)
        app = create_app(settings, keys=minter.key_source())
        options = uvicorn_options("gateway", "127.0.0.1", port)
        options.update(
            app=app,
            factory=False,
            ws_max_size=settings.max_frame_bytes,
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(uvicorn.Config(**options))  # type: ignore[arg-type]
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        gateway = RunningGateway(server, task, port, settings)
        running.append(gateway)
        return gateway

    yield start
    for gateway in running:
        await gateway.stop()


@pytest.fixture
def members(redis: Redis) -> Callable[..., Awaitable[None]]:
    """Create a conversation the way history does: members through the real cache
    writer, and a seq counter starting at 0."""
    cache = MembershipCache(redis, SHARDS)

    async def write(conversation_id: str, users: list[str], kind: str = "group") -> None:
        await cache.replace(conversation_id, kind, users)
        shard = ingest_shard_for(conversation_id, SHARDS)
        await redis.set(shard_seq(shard, conversation_id), 0, nx=True)

    return write
