"""Typed views of what the services answer. Plain frozen dataclasses, built from JSON by
``from_json``; unknown fields are ignored so newer servers keep working."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

ConversationKind = Literal["direct", "group"]
PresenceStatus = Literal["online", "offline"]


def _time(value: Any) -> datetime:
    # Python 3.11 reads both "...Z" and "...+00:00".
    return datetime.fromisoformat(str(value))


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


@dataclass(frozen=True, slots=True)
class TokenPair:
    """An access token with the refresh token that renews it."""

    access_token: str
    refresh_token: str
    expires_in: int
    issued_at: float  # unix time when the pair was received

    @property
    def expires_at(self) -> float:
        return self.issued_at + self.expires_in

    @classmethod
    def from_json(cls, data: Mapping[str, Any], issued_at: float | None = None) -> TokenPair:
        return cls(
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]),
            expires_in=int(data["expires_in"]),
            issued_at=time.time() if issued_at is None else issued_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_in": self.expires_in,
            "issued_at": self.issued_at,
        }


@dataclass(frozen=True, slots=True)
class User:
    """A profile. ``email`` is only known for the caller's own profile."""

    id: str
    username: str
    display_name: str
    created_at: datetime
    last_active_at: datetime | None = None
    email: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> User:
        email = data.get("email")
        return cls(
            id=str(data["id"]),
            username=str(data["username"]),
            display_name=str(data.get("display_name") or data["username"]),
            created_at=_time(data["created_at"]),
            last_active_at=_optional_time(data.get("last_active_at")),
            email=str(email) if email is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    conversation_id: str
    seq: int
    sender_id: str
    body: str
    client_id: str
    created_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        return cls(
            id=str(data["id"]),
            conversation_id=str(data["conversation_id"]),
            seq=int(data["seq"]),
            sender_id=str(data["sender_id"]),
            body=str(data["body"]),
            client_id=str(data["client_id"]),
            created_at=_time(data["created_at"]),
        )


@dataclass(frozen=True, slots=True)
class MessagePage:
    """Newest first for ``before_seq`` (or no cursor), oldest first for ``after_seq``."""

    messages: tuple[Message, ...]
    has_more: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MessagePage:
        return cls(
            messages=tuple(Message.from_json(m) for m in data["messages"]),
            has_more=bool(data["has_more"]),
        )


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    kind: ConversationKind
    name: str | None
    members: tuple[str, ...]
    owner_id: str | None
    last_seq: int
    last_message: Message | None
    unread_count: int
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Conversation:
        last = data.get("last_message")
        kind: ConversationKind = "group" if data.get("kind") == "group" else "direct"
        return cls(
            id=str(data["id"]),
            kind=kind,
            name=data.get("name"),
            members=tuple(str(m) for m in data.get("members", ())),
            owner_id=data.get("owner_id"),
            last_seq=int(data.get("last_seq", 0)),
            last_message=Message.from_json(last) if last else None,
            unread_count=int(data.get("unread_count", 0)),
            created_at=_optional_time(data.get("created_at")),
            updated_at=_optional_time(data.get("updated_at")),
        )


@dataclass(frozen=True, slots=True)
class Presence:
    user_id: str
    status: PresenceStatus
    last_active_at: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Presence:
        status: PresenceStatus = "online" if data.get("status") == "online" else "offline"
        return cls(
            user_id=str(data["user_id"]),
            status=status,
            last_active_at=_optional_time(data.get("last_active_at")),
        )


@dataclass(frozen=True, slots=True)
class Sent:
    """The gateway's confirmation: the message is durable and has its place (``seq``)."""

    client_id: str
    conversation_id: str
    message_id: str
    seq: int
    created_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sent:
        return cls(
            client_id=str(data["client_id"]),
            conversation_id=str(data["conversation_id"]),
            message_id=str(data["message_id"]),
            seq=int(data["seq"]),
            created_at=_time(data["created_at"]),
        )
