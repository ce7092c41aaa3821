"""Packaging promises of the SDK: no server code imported, errors typed even for
answers the real stack rarely gives (throttling, plain-text 5xx)."""

from __future__ import annotations

import subprocess
import sys

import httpx2
import pytest

from chat_client import ChatClient, InternalServerError, RateLimited

SERVER_PACKAGES = ("chat_shared", "chat_auth", "chat_history", "chat_gateway", "pydantic")


def test_the_sdk_and_cli_import_no_server_package() -> None:
    probe = (
        "import sys, chat_client, chat_client.cli\n"
        f"print(','.join(m for m in sys.modules if m.split('.')[0] in {SERVER_PACKAGES!r}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


async def test_throttled_and_broken_answers_become_typed_errors() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/v1/auth/login":
            return httpx2.Response(
                429,
                headers={"Retry-After": "7", "Content-Type": "application/problem+json"},
                json={
                    "type": "https://chat.example/problems/rate_limited",
                    "title": "Too many requests",
                    "status": 429,
                    "detail": "Too many failed logins; retry later.",
                    "code": "rate_limited",
                },
            )
        return httpx2.Response(502, text="Bad gateway")

    async with ChatClient(transport=httpx2.MockTransport(answer)) as client:
        with pytest.raises(RateLimited) as throttled:
            await client.login("alice", "wrong password")
        assert throttled.value.retry_after == 7.0
        assert throttled.value.code == "rate_limited"
        assert throttled.value.detail == "Too many failed logins; retry later."
        with pytest.raises(InternalServerError) as broken:
            await client.signup("alice", "alice@example.test", "long enough pw")
        assert (broken.value.status, broken.value.detail) == (502, "Bad gateway")
