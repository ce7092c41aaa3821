"""Fixtures of the auth suite: the real app (lifespan running) on real Valkey + SQLite.

Requests go through httpx2's ASGI transport. That transport does not run the ASGI
lifespan, so :func:`running` plays the server's part: it drives the lifespan protocol
and hands each request a copy of the lifespan state, as uvicorn does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from redis.asyncio import Redis

from chat_auth.app import create_app
from chat_auth.settings import ARGON2_MIN_MEMORY_KIB, ARGON2_MIN_TIME_COST, AuthSettings

ASGIApp = Callable[..., Any]

PASSWORD = "correct horse battery"

# Argon2 at the security floor keeps the suite fast; production defaults are higher.
FAST_HASHING: dict[str, Any] = {
    "argon2_time_cost": ARGON2_MIN_TIME_COST,
    "argon2_memory_kib": ARGON2_MIN_MEMORY_KIB,
    "argon2_parallelism": 1,
}


@contextlib.asynccontextmanager
async def running(app: ASGIApp) -> AsyncIterator[ASGIApp]:
    """Run ``app``'s lifespan; yield an ASGI app that serves requests with its state."""
    state: dict[str, Any] = {}
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    task = asyncio.create_task(app(scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    started = asyncio.create_task(from_app.get())
    await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        started.cancel()
        task.result()  # raises the start-up error
        raise RuntimeError("lifespan ended before start-up completed")
    message = started.result()
    if message["type"] != "lifespan.startup.complete":
        with contextlib.suppress(Exception):
            await task
        raise RuntimeError(f"start-up failed: {message.get('message')}")

    async def serve(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    try:
        yield serve
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        await from_app.get()
        await task


@dataclass
class AuthClient:
    """An HTTP client on one running app, with the calls most tests need."""

    http: httpx2.AsyncClient
    settings: AuthSettings

    async def signup(
        self, username: str, password: str = PASSWORD, email: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        body = {
            "username": username,
            "email": email or f"{username}@example.com",
            "password": password,
            **extra,
        }
        response = await self.http.post("/v1/auth/signup", json=body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def login(self, login: str, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.http.post(
            "/v1/auth/login", json={"login": login, "password": password}
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def user(
        self, username: str, password: str = PASSWORD
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Sign up and log in: (profile, token pair)."""
        profile = await self.signup(username, password)
        return profile, await self.login(username, password)

    @staticmethod
    def bearer(pair: dict[str, Any]) -> dict[str, str]:
        return {"Authorization": f"Bearer {pair['access_token']}"}


@pytest.fixture
def make_settings(data_dir: Path, redis_settings: dict[str, object]) -> Callable[..., AuthSettings]:
    def make(**overrides: Any) -> AuthSettings:
        values: dict[str, Any] = {
            "data_dir": data_dir,
            **redis_settings,
            "max_concurrent_hashes": 2,
            "signups_per_address": 1000,
            **FAST_HASHING,
            **overrides,
        }
        return AuthSettings(**values)

    return make


@pytest.fixture
def open_client(
    redis: Redis, make_settings: Callable[..., AuthSettings]
) -> Callable[..., contextlib.AbstractAsyncContextManager[AuthClient]]:
    """``async with open_client(**settings) as api``: a fresh app on the test's data
    dir and a flushed Valkey. Several may run one after another on the same data."""

    @contextlib.asynccontextmanager
    async def open_(address: str = "203.0.113.10", **overrides: Any) -> AsyncIterator[AuthClient]:
        settings = make_settings(**overrides)
        async with running(create_app(settings)) as app:
            transport = httpx2.ASGITransport(app=app, client=(address, 40000))
            async with httpx2.AsyncClient(transport=transport, base_url="http://auth.test") as http:
                yield AuthClient(http, settings)

    return open_


@pytest.fixture
async def api(
    open_client: Callable[..., contextlib.AbstractAsyncContextManager[AuthClient]],
) -> AsyncIterator[AuthClient]:
    async with open_client() as client:
        yield client
