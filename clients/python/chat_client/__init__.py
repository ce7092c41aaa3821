"""Asyncio client SDK for the chat platform: typed REST calls and a realtime session
that resumes, dedupes and fills gaps so the caller sees every message once, in order.

    async with ChatClient() as client:
        await client.login("alice", "correct horse battery")
        async with client.connect(state_file="alice.json") as session:
            await session.send(conversation_id, "hello")
            async for event in session:
                ...
"""

from chat_client.client import (
    DEFAULT_AUTH_URL,
    DEFAULT_GATEWAY_URL,
    DEFAULT_HISTORY_URL,
    ChatClient,
)
from chat_client.connection import SessionOptions
from chat_client.errors import (
    ApiError,
    BadRequest,
    ChatClientError,
    Conflict,
    Forbidden,
    InternalServerError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SendRefused,
    ServiceUnavailable,
    SessionClosed,
    TransportError,
    Unauthorized,
)
from chat_client.events import (
    ConnectionChanged,
    ConnectionState,
    ErrorReceived,
    Event,
    MessageReceived,
    PresenceChanged,
    ReceiptReceived,
    Resynced,
    TypingChanged,
)
from chat_client.models import (
    Conversation,
    Message,
    MessagePage,
    Presence,
    Sent,
    TokenPair,
    User,
)
from chat_client.outbox import new_client_id
from chat_client.session import RealtimeSession
from chat_client.state import DeviceState
from chat_client.tokens import TokenKeeper

__all__ = [
    "DEFAULT_AUTH_URL",
    "DEFAULT_GATEWAY_URL",
    "DEFAULT_HISTORY_URL",
    "ApiError",
    "BadRequest",
    "ChatClient",
    "ChatClientError",
    "Conflict",
    "ConnectionChanged",
    "ConnectionState",
    "Conversation",
    "DeviceState",
    "ErrorReceived",
    "Event",
    "Forbidden",
    "InternalServerError",
    "InvalidInput",
    "Message",
    "MessagePage",
    "MessageReceived",
    "NotAuthenticated",
    "NotFound",
    "PayloadTooLarge",
    "Presence",
    "PresenceChanged",
    "RateLimited",
    "RealtimeSession",
    "ReceiptReceived",
    "Resynced",
    "SendRefused",
    "Sent",
    "ServiceUnavailable",
    "SessionClosed",
    "SessionOptions",
    "TokenKeeper",
    "TokenPair",
    "TransportError",
    "TypingChanged",
    "Unauthorized",
    "User",
    "new_client_id",
]
