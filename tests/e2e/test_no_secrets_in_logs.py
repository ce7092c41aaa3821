"""No token or password reaches any log line of any process, at INFO level, whichever
way a client hands its token over: the Authorization header, the subprotocol pair, or
the query string that uvicorn itself prints when it accepts a WebSocket."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx2
import pytest

from tests.support.stack import start_stack
from tests.support.wsclient import ChatSocket

pytestmark = pytest.mark.slow

PASSWORD = "never log me 0123"


async def test_tokens_and_passwords_appear_in_no_log_line(tmp_path: Path) -> None:
    running = await asyncio.to_thread(
        start_stack, tmp_path, gateways=1, env={"CHAT_LOG_LEVEL": "INFO"}
    )
    try:
        username = f"leak{uuid.uuid4().hex[:8]}"
        async with httpx2.AsyncClient(base_url=running.auth_url, timeout=30) as auth:
            signed_up = await auth.post(
                "/v1/auth/signup",
                json={"username": username, "email": f"{username}@x.test", "password": PASSWORD},
            )
            assert signed_up.status_code == 201, signed_up.text
            wrong = await auth.post("/v1/auth/login", json={"login": username, "password": "x"})
            assert wrong.status_code == 401
            pair = (
                await auth.post("/v1/auth/login", json={"login": username, "password": PASSWORD})
            ).json()
            renewed = (
                await auth.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
            ).json()
        secrets = {
            PASSWORD,
            pair["access_token"],
            pair["refresh_token"],
            renewed["access_token"],
            renewed["refresh_token"],
        }
        url = running.ws_urls[0]
        token = renewed["access_token"]
        for socket in [
            await ChatSocket.open(url, token),
            await ChatSocket.open(url, token, subprotocol=True),
            await ChatSocket.open(f"{url}?access_token={token}"),
            await ChatSocket.open(f"{url}?access_token={pair['access_token']}x"),  # refused
        ]:
            await socket.close()
        async with httpx2.AsyncClient(base_url=running.history_url, timeout=30) as history:
            listed = await history.get(
                "/v1/conversations", headers={"Authorization": f"Bearer {token}"}
            )
            assert listed.status_code == 200
    finally:
        running.stack.stop()

    logs = sorted((tmp_path / "logs").glob("*.log"))
    assert {p.stem for p in logs} >= {"auth", "history", "gateway1"}
    text = {path.name: path.read_text() for path in logs}
    assert "[accepted]" in text["gateway1.log"], "uvicorn's accept line is what is checked"
    for name, content in text.items():
        for secret in secrets:
            assert secret not in content, f"{name} holds a secret"
