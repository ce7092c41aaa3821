"""Logging out ends the session everywhere at once: its open sockets close with 4401,
and its access token stops working for REST and for new sockets, while the same
user's other session goes on. A replayed refresh token does the same to its session."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.stack import start_stack
from tests.support.wsclient import ChatSocket

pytestmark = pytest.mark.slow

PASSWORD = "logout test password 1"


async def test_logout_revokes_the_sessions_access_tokens_and_closes_its_sockets(
    tmp_path: Path,
) -> None:
    grace = {"CHAT_REFRESH_REUSE_GRACE_SECONDS": "0.5"}
    running = await asyncio.to_thread(start_stack, tmp_path, gateways=2, env=grace)
    try:
        name = f"out{uuid.uuid4().hex[:8]}"
        async with (
            httpx2.AsyncClient(base_url=running.auth_url, timeout=30) as auth,
            httpx2.AsyncClient(base_url=running.history_url, timeout=30) as history,
        ):
            created = await auth.post(
                "/v1/auth/signup",
                json={"username": name, "email": f"{name}@x.test", "password": PASSWORD},
            )
            assert created.status_code == 201

            async def login() -> dict[str, Any]:
                answer = await auth.post(
                    "/v1/auth/login", json={"login": name, "password": PASSWORD}
                )
                return dict(answer.json())

            phone, laptop = await login(), await login()
            sockets = [await ChatSocket.open(url, phone["access_token"]) for url in running.ws_urls]
            other = await ChatSocket.open(running.ws_urls[0], laptop["access_token"])
            for socket in [*sockets, other]:
                await socket.start()

            logged_out = time.monotonic()
            answer = await auth.post(
                "/v1/auth/logout", json={"refresh_token": phone["refresh_token"]}
            )
            assert answer.status_code == 204
            codes = await asyncio.gather(*(s.closed_with(timeout=5) for s in sockets))
            assert codes == [4401, 4401]
            assert time.monotonic() - logged_out < 2.0

            def bearer(pair: dict[str, Any]) -> dict[str, str]:
                return {"Authorization": f"Bearer {pair['access_token']}"}

            assert (
                await history.get("/v1/conversations", headers=bearer(phone))
            ).status_code == 401
            refused = await ChatSocket.open(running.ws_urls[1], phone["access_token"])
            assert await refused.closed_with() == 4401
            # The other session of the same user is untouched.
            assert (
                await history.get("/v1/conversations", headers=bearer(laptop))
            ).status_code == 200
            await other.send(type="ping")
            assert (await other.expect("pong"))["type"] == "pong"

            # A refresh token used again after the grace revokes its session's access
            # tokens as well (within it, the same pair comes back: two tabs, a retry).
            renewed = (
                await auth.post("/v1/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
            ).json()
            await asyncio.sleep(0.6)  # the grace is wall-clock time: let it pass
            replay = await auth.post(
                "/v1/auth/refresh", json={"refresh_token": laptop["refresh_token"]}
            )
            assert replay.status_code == 401
            assert await other.closed_with(timeout=5) == 4401
            gone = await history.get("/v1/conversations", headers=bearer(renewed))
            assert gone.status_code == 401
    finally:
        running.stack.stop()
