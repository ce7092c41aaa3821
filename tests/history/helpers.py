"""Helpers of the history suite: a real uvicorn server in a thread, a user directory."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2
import uvicorn
from fastapi import FastAPI, Header, HTTPException, Query

from chat_shared.ids import new_id
from tests.support.ports import free_port
from tests.support.tokens import TokenMinter


class ServerThread:
    """An ASGI app under a real uvicorn server, on its own event loop in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            loop="asyncio",
            lifespan="on",
            log_config=None,
            access_log=False,
            ws="none",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server stopped during start-up (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start in time")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@dataclass
class UserDirectoryApp:
    """Stands in for the auth service's `GET /v1/users?ids=` (accounts live here)."""

    known: set[str] = field(default_factory=set)
    requests: int = 0

    def add(self, count: int = 1) -> list[str]:
        ids = [new_id() for _ in range(count)]
        self.known.update(ids)
        return ids

    def asgi(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/users")
        async def users(
            ids: str = Query(""), authorization: str | None = Header(None)
        ) -> dict[str, Any]:
            self.requests += 1
            if not authorization or not authorization.startswith("Bearer "):
                raise HTTPException(401)
            wanted = [i for i in ids.split(",") if i]
            return {
                "users": [
                    {
                        "id": i,
                        "username": f"user-{i[-6:].lower()}",
                        "display_name": i,
                        "created_at": "2026-01-01T00:00:00.000Z",
                    }
                    for i in wanted
                    if i in self.known
                ]
            }

        return app


class Api:
    """An HTTP client of the running history service, acting as one user or another."""

    def __init__(self, base_url: str, minter: TokenMinter) -> None:
        self.http = httpx2.AsyncClient(base_url=base_url, timeout=30.0)
        self.minter = minter
        self._tokens: dict[str, str] = {}

    def auth(self, user_id: str) -> dict[str, str]:
        token = self._tokens.get(user_id)
        if token is None:
            token = self._tokens[user_id] = self.minter.token(user_id)
        return {"Authorization": f"Bearer {token}"}

    async def call(
        self, method: str, path: str, user: str | None, **kwargs: Any
    ) -> httpx2.Response:
        headers = {**(self.auth(user) if user else {}), **kwargs.pop("headers", {})}
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def group(self, owner: str, members: list[str], name: str = "team") -> dict[str, Any]:
        response = await self.call(
            "POST",
            "/v1/conversations",
            owner,
            json={"kind": "group", "name": name, "members": members},
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def direct(self, user: str, peer: str) -> httpx2.Response:
        return await self.call(
            "POST", "/v1/conversations", user, json={"kind": "direct", "members": [peer]}
        )

    async def send(
        self, user: str, conversation_id: str, body: str, client_id: str
    ) -> httpx2.Response:
        return await self.call(
            "POST",
            f"/v1/conversations/{conversation_id}/messages",
            user,
            json={"body": body, "client_id": client_id},
        )

    async def messages(self, user: str, conversation_id: str, **params: Any) -> httpx2.Response:
        return await self.call(
            "GET", f"/v1/conversations/{conversation_id}/messages", user, params=params
        )

    async def close(self) -> None:
        await self.http.aclose()
