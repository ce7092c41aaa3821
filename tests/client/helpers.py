"""Accounts and event collection for the client tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chat_client import (
    ChatClient,
    Event,
    Message,
    MessageReceived,
    RealtimeSession,
    Sent,
    User,
)

PASSWORD = "correct horse battery"
SEND_SECONDS = 15.0


async def confirmed(session: RealtimeSession, conversation_id: str, body: str, **kw: Any) -> Sent:
    """Send and wait for ``sent``, failing the test (not hanging it) if none comes."""
    try:
        async with asyncio.timeout(SEND_SECONDS):
            return await session.send(conversation_id, body, **kw)
    except TimeoutError:
        raise AssertionError(f"no sent for {body!r} within {SEND_SECONDS}s") from None


@dataclass(frozen=True)
class Urls:
    auth: str
    history: str
    gateway: str

    def client(self, **options: Any) -> ChatClient:
        return ChatClient(
            auth_url=self.auth, history_url=self.history, gateway_url=self.gateway, **options
        )


@dataclass
class Account:
    client: ChatClient
    user: User

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def username(self) -> str:
        return self.user.username


@dataclass
class AccountFactory:
    urls: Urls
    clients: list[ChatClient] = field(default_factory=list)

    def client(self, **options: Any) -> ChatClient:
        client = self.urls.client(**options)
        self.clients.append(client)
        return client

    async def new(self, **options: Any) -> Account:
        """A fresh user, signed up and logged in through the SDK."""
        client = self.client(**options)
        username = f"u{uuid.uuid4().hex[:12]}"
        user = await client.signup(username, f"{username}@example.test", PASSWORD)
        await client.login(username, PASSWORD)
        return Account(client, user)

    async def close_all(self) -> None:
        for client in self.clients:
            await client.aclose()


class Collector:
    """Takes every event of a session in the background, as an application would."""

    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._take())

    async def _take(self) -> None:
        async for event in self.session:
            self.events.append(event)
            self._changed.set()

    @property
    def messages(self) -> list[Message]:
        return [e.message for e in self.events if isinstance(e, MessageReceived)]

    def of(self, kind: type[object]) -> list[object]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_until(
        self, condition: Callable[[], bool], what: str, seconds: float = 15.0
    ) -> None:
        try:
            async with asyncio.timeout(seconds):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    async def wait_for_seq(self, conversation_id: str, seq: int, seconds: float = 15.0) -> None:
        await self.wait_until(
            lambda: any(
                m.conversation_id == conversation_id and m.seq >= seq for m in self.messages
            ),
            f"seq {seq} of {conversation_id}",
            seconds,
        )

    async def stop(self) -> None:
        await self.session.close()
        await asyncio.wait_for(self._task, 10)
