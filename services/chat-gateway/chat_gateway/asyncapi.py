"""The AsyncAPI 3 description of the WebSocket protocol, served at ``/asyncapi.json``.

Client frame schemas come from the same pydantic models that validate frames, so the
document cannot drift from what the gateway accepts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from chat_gateway import frames
from chat_gateway.protocol import (
    CLOSE_ABUSE,
    CLOSE_HEARTBEAT_TIMEOUT,
    CLOSE_RESTARTING,
    CLOSE_SLOW_READER,
    CLOSE_TOKEN_INVALID,
    CLOSE_TOO_MANY_CONNECTIONS,
)
from chat_gateway.settings import GatewaySettings

_STRING = {"type": "string"}
_INT = {"type": "integer"}

MESSAGE_SCHEMA = {
    "type": "object",
    "required": ["id", "conversation_id", "seq", "sender_id", "body", "client_id", "created_at"],
    "properties": {
        "id": {**_STRING, "description": "Globally unique, time-sortable id."},
        "conversation_id": _STRING,
        "seq": {**_INT, "minimum": 1, "description": "1, 2, 3... per conversation, no gaps."},
        "sender_id": _STRING,
        "body": _STRING,
        "client_id": _STRING,
        "created_at": {**_STRING, "format": "date-time"},
    },
}

SERVER_FRAMES: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "hello": (
        "First frame of every session.",
        {
            "user_id": _STRING,
            "device_id": _STRING,
            "session_id": _STRING,
            "heartbeat_interval_ms": _INT,
            "cursor": {**_STRING, "description": "Inbox cursor the session starts after."},
        },
        ["user_id", "device_id", "session_id", "heartbeat_interval_ms", "cursor"],
    ),
    "sent": (
        "The message is durable and has its place (seq) in the conversation.",
        {
            "client_id": _STRING,
            "conversation_id": _STRING,
            "message_id": _STRING,
            "seq": _INT,
            "created_at": {**_STRING, "format": "date-time"},
        },
        ["client_id", "conversation_id", "message_id", "seq", "created_at"],
    ),
    "message": (
        "A message for this user, in inbox order; ack its cursor once processed.",
        {
            "cursor": _STRING,
            "message": MESSAGE_SCHEMA,
        },
        ["cursor", "message"],
    ),
    "receipt": (
        "A member read a conversation up to seq.",
        {
            "conversation_id": _STRING,
            "user_id": _STRING,
            "seq": _INT,
            "kind": {"type": "string", "const": "read"},
        },
        ["conversation_id", "user_id", "seq", "kind"],
    ),
    "typing": (
        "A member is typing (or stopped). Expire it after a few seconds.",
        {
            "conversation_id": _STRING,
            "user_id": _STRING,
            "active": {"type": "boolean"},
        },
        ["conversation_id", "user_id", "active"],
    ),
    "presence": (
        "A contact went online or offline.",
        {
            "user_id": _STRING,
            "status": {"type": "string", "enum": ["online", "offline"]},
            "last_active_at": {"type": ["string", "null"], "format": "date-time"},
        },
        ["user_id", "status", "last_active_at"],
    ),
    "resync": (
        "The cursor is older than the inbox keeps: page the history of each "
        "conversation by seq, then continue.",
        {
            "reason": _STRING,
            "cursor": _STRING,
        },
        ["reason"],
    ),
    "pong": ("Answer to ping.", {}, []),
    "error": (
        "A frame was refused; the connection stays open.",
        {
            "code": {
                "type": "string",
                "enum": [
                    "bad_frame",
                    "invalid",
                    "too_large",
                    "not_member",
                    "rate_limited",
                    "unavailable",
                ],
            },
            "message": _STRING,
            "client_id": _STRING,
            "retry_after_ms": {**_INT, "description": "With rate_limited: when to retry."},
        },
        ["code", "message"],
    ),
}

CLIENT_FRAME_DOCS = {
    "send": "Post a message. Retrying with the same client_id never duplicates it.",
    "ack": "This device has processed everything up to cursor.",
    "read": "Read receipt: the user has read the conversation up to seq.",
    "typing": "Typing indicator; not stored.",
    "ping": "Heartbeat; keeps the session and presence alive.",
    "auth": "Hand over a refreshed access token before the current one expires.",
}

CLIENT_MODELS: dict[str, type[BaseModel]] = {
    "send": frames.SendFrame,
    "ack": frames.AckFrame,
    "read": frames.ReadFrame,
    "typing": frames.TypingFrame,
    "ping": frames.PingFrame,
    "auth": frames.AuthFrame,
}


def _server_schema(kind: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", *required],
        "properties": {"type": {"type": "string", "const": kind}, **properties},
    }


def asyncapi_document(settings: GatewaySettings) -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for kind, model in CLIENT_MODELS.items():
        messages[f"client.{kind}"] = {
            "name": kind,
            "title": f"{kind} (client to server)",
            "summary": CLIENT_FRAME_DOCS[kind],
            "contentType": "application/json",
            "payload": model.model_json_schema(),
        }
    for kind, (summary, properties, required) in SERVER_FRAMES.items():
        messages[f"server.{kind}"] = {
            "name": kind,
            "title": f"{kind} (server to client)",
            "summary": summary,
            "contentType": "application/json",
            "payload": _server_schema(kind, properties, required),
        }
    channel_ref = {"$ref": "#/channels/session"}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Chat gateway WebSocket protocol",
            "version": "1.0.0",
            "description": _DESCRIPTION.format(
                max_frame=settings.max_frame_bytes,
                max_chars=settings.max_message_chars,
                timeout=settings.presence_timeout,
                beat=settings.heartbeat_interval,
                codes=_close_codes(),
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8000",
                "protocol": "ws",
                "description": "The embedded stack started by `make run`.",
            },
        },
        "channels": {
            "session": {
                "address": "/v1/ws",
                "title": "One WebSocket session of one device",
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "query": {
                            "type": "object",
                            "properties": {
                                "device_id": {
                                    "type": "string",
                                    "maxLength": 64,
                                    "description": "Stable per device; default: new.",
                                },
                                "cursor": {
                                    "type": "string",
                                    "description": "Last inbox cursor this device processed.",
                                },
                                "access_token": {
                                    "type": "string",
                                    "description": "For tools; prefer the header.",
                                },
                            },
                        },
                    }
                },
            }
        },
        "operations": {
            "clientSends": {
                "action": "receive",
                "channel": channel_ref,
                "summary": "Frames a client sends to the gateway.",
                "messages": [
                    {"$ref": f"#/channels/session/messages/client.{k}"} for k in CLIENT_MODELS
                ],
            },
            "gatewaySends": {
                "action": "send",
                "channel": channel_ref,
                "summary": "Frames the gateway sends to a client.",
                "messages": [
                    {"$ref": f"#/channels/session/messages/server.{k}"} for k in SERVER_FRAMES
                ],
            },
        },
        "components": {"messages": messages},
    }


def _close_codes() -> str:
    codes = {
        CLOSE_TOKEN_INVALID: "token missing, invalid, expired or revoked: log in again",
        CLOSE_HEARTBEAT_TIMEOUT: "no frame for the presence timeout",
        CLOSE_TOO_MANY_CONNECTIONS: "too many connections for this user or address",
        CLOSE_ABUSE: "kept sending over the rate limit, or an invalid device_id",
        1009: "frame over the size limit",
        CLOSE_RESTARTING: "the gateway is restarting: reconnect (any gateway) with your cursor",
        CLOSE_SLOW_READER: "the client stopped reading: reconnect with your cursor",
    }
    return "\n".join(f"- `{code}`: {text}" for code, text in codes.items())


_DESCRIPTION = """\
Connect to `/v1/ws` with an access token in the `Authorization: Bearer` header, or as the
subprotocol pair `["chat.v1", "bearer.<token>"]` (browsers; the server selects `chat.v1`),
or as `?access_token=`. Every frame is a JSON text frame with a `type`.

The server's first frame is `hello`. Every `message` carries an inbox cursor; send `ack`
with the newest cursor you processed, and reconnect with `?cursor=` (or the same
`device_id`, whose acknowledged cursor is kept) to receive everything after it exactly
once, in order. A `resync` frame means the cursor is older than the inbox keeps: fetch
each conversation's history by seq from the history service.

Limits: frames up to {max_frame} bytes, message bodies up to {max_chars} characters.
Send a `ping` (or any frame) at least every {beat} s; after {timeout} s of silence the
session is closed and the device counts as offline. WebSocket protocol pings are
answered by the server but never reach the application (ASGI does not pass them on),
so they keep the connection open without counting as presence heartbeats.

Close codes:
{codes}
"""
