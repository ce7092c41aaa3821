"""What a :class:`RealtimeSession` yields. Match on the class:

async for event in session:
    match event:
        case MessageReceived(message=m): ...
        case ConnectionChanged(state="connected"): ...
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from chat_client.models import Message, PresenceStatus

ConnectionState = Literal["connecting", "connected", "disconnected", "closed"]


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message, each exactly once and in seq order within its conversation.

    ``source`` is "live" for messages pushed by the gateway and "history" for ones
    fetched to fill a gap (after ``resync`` or when a seq was skipped)."""

    message: Message
    source: Literal["live", "history"]


@dataclass(frozen=True, slots=True)
class ReceiptReceived:
    """A member of ``conversation_id`` has read up to ``seq``."""

    conversation_id: str
    user_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class TypingChanged:
    conversation_id: str
    user_id: str
    active: bool


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    user_id: str
    status: PresenceStatus
    last_active_at: datetime | None


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    """The socket's state. ``disconnected`` carries the close code (None for a
    network failure) and ``retry_in``, the delay before the next attempt; ``closed``
    is final."""

    state: ConnectionState
    attempt: int = 0
    close_code: int | None = None
    reason: str = ""
    retry_in: float | None = None
    session_id: str | None = None
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class Resynced:
    """The device's cursor was older than the server keeps; ``filled`` messages were
    fetched from history (and delivered before this event)."""

    reason: str
    filled: int


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    """An ``error`` frame not tied to a pending send (a refused read receipt, a refused
    token hand-over...). The connection stays open."""

    code: str
    message: str


Event = (
    MessageReceived
    | ReceiptReceived
    | TypingChanged
    | PresenceChanged
    | ConnectionChanged
    | Resynced
    | ErrorReceived
)
