"""The WebSocket frames: one pydantic union for what clients send, and encoders for
what the server sends (orjson, since encoding is on the hot path).

Inbound frames are validated strictly (a string field must be a string, a number a
number); unknown fields are ignored so newer clients keep working with older gateways.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

MAX_ID_CHARS = 64


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


ConversationId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)]


class SendFrame(_Frame):
    type: Literal["send"]
    client_id: StrictStr
    conversation_id: ConversationId
    body: StrictStr


class AckFrame(_Frame):
    type: Literal["ack"]
    cursor: StrictStr


class ReadFrame(_Frame):
    type: Literal["read"]
    conversation_id: ConversationId
    seq: StrictInt


class TypingFrame(_Frame):
    type: Literal["typing"]
    conversation_id: ConversationId
    active: StrictBool


class PingFrame(_Frame):
    type: Literal["ping"]


class AuthFrame(_Frame):
    """Extension: hand a refreshed access token to a live session before the old expires."""

    type: Literal["auth"]
    token: Annotated[StrictStr, Field(min_length=1, max_length=8192)]


ClientFrame = Annotated[
    SendFrame | AckFrame | ReadFrame | TypingFrame | PingFrame | AuthFrame,
    Field(discriminator="type"),
]
CLIENT_FRAME_TYPES = ("send", "ack", "read", "typing", "ping", "auth")

_client_frames: TypeAdapter[Any] = TypeAdapter(ClientFrame)


class BadFrame(Exception):
    """Not JSON, not an object, an unknown type, a missing or mistyped field."""

    def __init__(self, message: str, client_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.client_id = client_id


def parse_client_frame(raw: str | bytes) -> Any:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadFrame("frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadFrame("frame must be a JSON object")
    client_id = data.get("client_id") if isinstance(data.get("client_id"), str) else None
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_FRAME_TYPES:
        raise BadFrame(
            f"unknown frame type; expected one of {', '.join(CLIENT_FRAME_TYPES)}", client_id
        )
    try:
        return _client_frames.validate_python(data)
    except PydanticValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "frame"
        raise BadFrame(
            f"{where}: {first.get('msg', 'invalid')}", client_id[:64] if client_id else None
        ) from None


# Server frames. Kept as small functions returning text so the I/O layer only writes.


def _dump(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def hello(user_id: str, device_id: str, session_id: str, heartbeat_ms: int, cursor: str) -> str:
    return _dump(
        {
            "type": "hello",
            "user_id": user_id,
            "device_id": device_id,
            "session_id": session_id,
            "heartbeat_interval_ms": heartbeat_ms,
            "cursor": cursor,
        }
    )


def sent(client_id: str, conversation_id: str, message_id: str, seq: int, created_at: str) -> str:
    return _dump(
        {
            "type": "sent",
            "client_id": client_id,
            "conversation_id": conversation_id,
            "message_id": message_id,
            "seq": seq,
            "created_at": created_at,
        }
    )


def message(cursor: str, message_json: str) -> str:
    # The message is stored pre-encoded in the inbox: splice it rather than re-encode.
    return f'{{"type":"message","cursor":"{cursor}","message":{message_json}}}'


def error(
    code: str, detail: str, client_id: str | None = None, retry_after_ms: int | None = None
) -> str:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": detail}
    if client_id is not None:
        frame["client_id"] = client_id
    if retry_after_ms is not None:
        frame["retry_after_ms"] = retry_after_ms
    return _dump(frame)


def resync(reason: str, cursor: str) -> str:
    return _dump({"type": "resync", "reason": reason, "cursor": cursor})


def pong() -> str:
    return '{"type":"pong"}'


def receipt(conversation_id: str, user_id: str, seq: int) -> str:
    return _dump(
        {
            "type": "receipt",
            "conversation_id": conversation_id,
            "user_id": user_id,
            "seq": seq,
            "kind": "read",
        }
    )


def typing(conversation_id: str, user_id: str, active: bool) -> str:
    return _dump(
        {"type": "typing", "conversation_id": conversation_id, "user_id": user_id, "active": active}
    )


def presence(user_id: str, status: str, last_active_at: str | None) -> str:
    return _dump(
        {"type": "presence", "user_id": user_id, "status": status, "last_active_at": last_active_at}
    )
