"""Messages sent but not yet confirmed by a ``sent`` frame.

Each keeps its ``client_id`` for life: it is written again after every reconnect and
after a transient refusal (``rate_limited``, ``unavailable``), and the gateway maps a
repeated ``(sender, conversation, client_id)`` to the original message, so retries
never duplicate. A permanent refusal fails the caller's future with
:class:`SendRefused`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from chat_client.errors import SendRefused
from chat_client.models import Sent

# Codes after which the same frame may succeed later.
TRANSIENT_CODES = frozenset({"rate_limited", "unavailable"})
MAX_TRANSIENT_RETRIES = 20
RETRY_BASE_DELAY = 0.2
RETRY_MAX_DELAY = 5.0


@dataclass
class PendingSend:
    client_id: str
    conversation_id: str
    frame: str
    future: asyncio.Future[Sent]
    retries: int = 0


def new_client_id() -> str:
    """A fresh id for an idempotent send (services accept 1-64 of ``[A-Za-z0-9._:-]``)."""
    return f"c-{uuid.uuid4().hex}"


def send_frame(client_id: str, conversation_id: str, body: str) -> str:
    return orjson.dumps(
        {
            "type": "send",
            "client_id": client_id,
            "conversation_id": conversation_id,
            "body": body,
        }
    ).decode()


class Outbox:
    def __init__(self, transmit: Callable[[str], None]) -> None:
        # ``transmit`` writes a frame if a socket is up, and does nothing otherwise
        # (the next connection writes every pending frame anyway).
        self._transmit = transmit
        self._pending: dict[str, PendingSend] = {}
        self._timers: set[asyncio.TimerHandle] = set()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, client_id: str, conversation_id: str, body: str) -> PendingSend:
        """Register a send; the same ``client_id`` while pending shares one future."""
        existing = self._pending.get(client_id)
        if existing is not None:
            return existing
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        pending = PendingSend(
            client_id, conversation_id, send_frame(client_id, conversation_id, body), future
        )
        self._pending[client_id] = pending
        return pending

    def frames(self) -> list[str]:
        """Every pending frame, oldest first (what a new connection writes)."""
        return [p.frame for p in self._pending.values()]

    def confirm(self, frame: Mapping[str, Any]) -> None:
        pending = self._pending.pop(str(frame.get("client_id")), None)
        if pending is not None and not pending.future.done():
            pending.future.set_result(Sent.from_json(frame))

    def refuse(self, frame: Mapping[str, Any]) -> bool:
        """Handle an error frame about a pending send; False if it is about none."""
        client_id = frame.get("client_id")
        pending = self._pending.get(client_id) if isinstance(client_id, str) else None
        if pending is None:
            return False
        code = str(frame.get("code", ""))
        if code in TRANSIENT_CODES and pending.retries < MAX_TRANSIENT_RETRIES:
            pending.retries += 1
            retry_ms = frame.get("retry_after_ms")
            if isinstance(retry_ms, int | float) and retry_ms > 0:
                delay = float(retry_ms) / 1000
            else:
                delay = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2 ** (pending.retries - 1))
            self._schedule_retry(pending.client_id, delay)
            return True
        del self._pending[pending.client_id]
        if not pending.future.done():
            pending.future.set_exception(
                SendRefused(code, str(frame.get("message", "")), pending.client_id)
            )
        return True

    def _schedule_retry(self, client_id: str, delay: float) -> None:
        def fire() -> None:
            self._timers.discard(handle)
            pending = self._pending.get(client_id)
            if pending is not None:
                self._transmit(pending.frame)

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(handle)

    def forget(self, client_id: str) -> None:
        """Stop retrying (the caller gave up waiting)."""
        self._pending.pop(client_id, None)

    def fail_all(self, error: BaseException) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        pending, self._pending = self._pending, {}
        for each in pending.values():
            if not each.future.done():
                each.future.set_exception(error)
