"""History next to the real auth service (both under uvicorn in this process): tokens
verified through auth's JWKS, member ids checked through `GET /v1/users?ids=`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from redis.asyncio import Redis

from chat_auth.app import create_app as create_auth_app
from chat_auth.settings import AuthSettings
from chat_history.app import create_app
from chat_history.settings import HistorySettings
from chat_shared.store.migrate import migrate_sqlite
from tests.history.helpers import ServerThread

PASSWORD = "correct horse battery"


@dataclass
class Services:
    auth: str
    history: str


@pytest.fixture
def services(redis: Redis, data_dir: Path, redis_url: str) -> Iterator[Services]:
    auth_settings = AuthSettings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=data_dir,
        redis_url=redis_url,
        argon2_time_cost=2,
        argon2_memory_kib=19 * 1024,
        signups_per_address=1000,
    )
    migrate_sqlite(auth_settings, "auth")
    auth = ServerThread(create_auth_app(auth_settings)).start()
    history_settings = HistorySettings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=data_dir,
        redis_url=redis_url,
        ingest_shards=4,
        auth_url=auth.url,
        jwks_url=f"{auth.url}/.well-known/jwks.json",
        consumer_block_ms=50,
    )
    migrate_sqlite(history_settings, "history")
    history = ServerThread(create_app(history_settings)).start()
    yield Services(auth.url, history.url)
    history.stop()
    auth.stop()


async def signup(auth_url: str, username: str) -> tuple[str, dict[str, str]]:
    async with httpx2.AsyncClient(base_url=auth_url, timeout=30) as http:
        created = await http.post(
            "/v1/auth/signup",
            json={
                "username": username,
                "email": f"{username}@example.test",
                "password": PASSWORD,
            },
        )
        assert created.status_code == 201, created.text
        login = await http.post("/v1/auth/login", json={"login": username, "password": PASSWORD})
        assert login.status_code == 200, login.text
    return created.json()["id"], {"Authorization": f"Bearer {login.json()['access_token']}"}


async def test_history_works_with_the_real_auth_service(services: Services) -> None:
    alice, as_alice = await signup(services.auth, "alice")
    bob, as_bob = await signup(services.auth, "bob")
    async with httpx2.AsyncClient(base_url=services.history, timeout=30) as http:

        async def create(body: dict[str, Any]) -> httpx2.Response:
            return await http.post("/v1/conversations", json=body, headers=as_alice)

        direct = await create({"kind": "direct", "members": [bob]})
        assert direct.status_code == 201, direct.text
        assert sorted(direct.json()["members"]) == sorted([alice, bob])
        unknown = await create({"kind": "group", "name": "g", "members": [bob, "01" + "X" * 24]})
        assert unknown.status_code == 422
        group = await create({"kind": "group", "name": "g", "members": [bob]})
        assert group.status_code == 201, group.text

        conversation = direct.json()["id"]
        sent = await http.post(
            f"/v1/conversations/{conversation}/messages",
            json={"body": "hi bob", "client_id": "c1"},
            headers=as_alice,
        )
        assert sent.status_code == 201, sent.text
        page = await http.get(f"/v1/conversations/{conversation}/messages", headers=as_bob)
        assert [m["body"] for m in page.json()["messages"]] == ["hi bob"]
        assert (await http.get("/v1/conversations")).status_code == 401
