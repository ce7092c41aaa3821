"""A small WebSocket test client on the `websockets` library, with frame helpers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class ChatSocket:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.hello: dict[str, Any] = {}

    @classmethod
    async def open(
        cls,
        url: str,
        token: str | None = None,
        *,
        device_id: str | None = None,
        cursor: str | None = None,
        subprotocol: bool = False,
        origin: str | None = None,
        max_size: int | None = 2**24,
        max_queue: int | None = 16,
    ) -> ChatSocket:
        query = []
        if device_id:
            query.append(f"device_id={device_id}")
        if cursor:
            query.append(f"cursor={cursor}")
        full = url + ("?" + "&".join(query) if query else "")
        headers = {}
        subprotocols = None
        if token and subprotocol:
            subprotocols = ["chat.v1", f"bearer.{token}"]
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        ws = await connect(
            full,
            additional_headers=headers,
            subprotocols=subprotocols,  # type: ignore[arg-type]
            origin=origin,
            max_size=max_size,
            max_queue=max_queue,
            compression=None,
            open_timeout=10,
            ping_interval=None,
        )
        return cls(ws)

    async def start(self) -> dict[str, Any]:
        self.hello = await self.expect("hello")
        return self.hello

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        return dict(json.loads(raw))

    async def expect(
        self,
        kind: str,
        timeout: float = 10.0,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The next frame of this type, skipping others (presence, typing...)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if frame["type"] == kind and (where is None or where(frame)):
                return frame

    async def messages(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        found = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            found.append(await self.expect("message", max(0.01, deadline - time.monotonic())))
        return found

    async def closed_with(self, timeout: float = 10.0) -> int | None:
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    async def close(self) -> None:
        await self.ws.close()
