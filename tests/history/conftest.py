"""Fixtures of the history suite: settings on a fresh data dir, the service running
under a real uvicorn server, a user directory in place of the auth service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from redis.asyncio import Redis

from chat_history.app import create_app
from chat_history.metrics import HistoryMetrics
from chat_history.runtime import HistoryRuntime
from chat_history.settings import HistorySettings
from chat_history.storage.sqlite import SqliteHistoryStore
from chat_shared.store.migrate import migrate_sqlite, sqlite_path
from chat_shared.web.observability import ServiceMetrics
from tests.history.helpers import Api, ServerThread, UserDirectoryApp
from tests.support.tokens import TokenMinter

SettingsFactory = Callable[..., HistorySettings]


@pytest.fixture
def make_settings(data_dir: Path, redis_settings: dict[str, object]) -> SettingsFactory:
    """Settings for this test's data dir and the Redis under test; schema migrated."""

    def make(**overrides: Any) -> HistorySettings:
        values: dict[str, Any] = {
            "data_dir": data_dir,
            **redis_settings,
            "ingest_shards": 4,
            "auth_url": "http://auth.test",
            "max_group_members": 25,
            "max_message_chars": 1000,
            # Tests create and write in bursts; the limit tests set their own.
            "conversations_per_minute": 1_000_000,
            "rest_writes_per_second": 1_000_000,
            "rest_write_burst": 1_000_000,
            "send_rate": 1_000_000,
            "send_burst": 1_000_000,
            "consumer_block_ms": 50,
            "claim_interval_seconds": 0.2,
            "claim_idle_ms": 5000,
            "maintenance_interval_seconds": 3600,
            "cors_origins": [],
        }
        values.update(overrides)
        settings = HistorySettings(_env_file=None, **values)  # type: ignore[call-arg]
        migrate_sqlite(settings, "history")
        return settings

    return make


@pytest.fixture
def settings(make_settings: SettingsFactory) -> HistorySettings:
    return make_settings()


@pytest.fixture
def directory() -> UserDirectoryApp:
    return UserDirectoryApp()


@dataclass
class Users:
    alice: str
    bob: str
    carol: str
    dave: str
    stranger: str


@pytest.fixture
def users(directory: UserDirectoryApp) -> Users:
    return Users(*directory.add(5))


@dataclass
class Running:
    url: str
    settings: HistorySettings
    server: ServerThread


StartHistory = Callable[..., Running]


@pytest.fixture
def start_history(
    redis: Redis,
    make_settings: SettingsFactory,
    minter: TokenMinter,
    directory: UserDirectoryApp,
) -> Iterator[StartHistory]:
    """Start the history app (real uvicorn, own event loop) with settings overrides.

    Depends on ``redis`` so Valkey is flushed before the service starts."""
    started: list[ServerThread] = []

    def start(**overrides: Any) -> Running:
        settings = make_settings(**overrides)
        app = create_app(
            settings,
            keys=minter.key_source(),
            http_transport=httpx2.ASGITransport(app=directory.asgi()),
        )
        server = ServerThread(app).start()
        started.append(server)
        return Running(server.url, settings, server)

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def history(start_history: StartHistory) -> Running:
    return start_history()


@pytest.fixture
async def api(history: Running, minter: TokenMinter) -> AsyncIterator[Api]:
    client = Api(history.url, minter)
    yield client
    await client.close()


@pytest.fixture
async def stored(settings: HistorySettings) -> AsyncIterator[SqliteHistoryStore]:
    """The service's SQLite file, opened by the test to check what it holds."""
    store = SqliteHistoryStore(
        sqlite_path(settings, "history"), bucket_size=settings.message_bucket_size
    )
    yield store
    await store.close()


@pytest.fixture
async def runtime(
    redis: Redis, settings: HistorySettings, directory: UserDirectoryApp
) -> AsyncIterator[HistoryRuntime]:
    """The service's parts on the test's own event loop (no HTTP in between)."""
    opened = await HistoryRuntime.open(
        settings,
        HistoryMetrics(ServiceMetrics("history")),
        http_transport=httpx2.ASGITransport(app=directory.asgi()),
    )
    yield opened
    await opened.close()
