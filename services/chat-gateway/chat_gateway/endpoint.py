"""The ``/v1/ws`` endpoint: the handshake, then one :class:`Connection` per socket.

Authentication happens during the handshake, before any frame is read: a token from the
Authorization header, the ``["chat.v1", "bearer.<token>"]`` subprotocol pair, or the
``access_token`` query parameter (never logged). A refused token gets an accepted
socket closed at once with 4401, so browsers can see why.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from chat_gateway import frames
from chat_gateway.connection import Connection
from chat_gateway.cursors import parse_cursor
from chat_gateway.protocol import (
    CLOSE_ABUSE,
    CLOSE_TOKEN_INVALID,
    CLOSE_TOO_MANY_CONNECTIONS,
    SessionCore,
)
from chat_gateway.runtime import GatewayRuntime
from chat_gateway.upstream import HistoryClient
from chat_shared.keys import user_sessions
from chat_shared.limits import address_subject, user_subject
from chat_shared.logs import session_id_var
from chat_shared.tokens import (
    SUBPROTOCOL,
    TokenError,
    bearer_from_header,
    bearer_from_subprotocols,
)

log = logging.getLogger(__name__)

_DEVICE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")

Scope = dict[str, Any]


class WebSocketEndpoint:
    """A raw ASGI app: the hot path skips Starlette's WebSocket wrapper."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        runtime: GatewayRuntime = scope["state"]["gateway"]
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        offered = list(scope.get("subprotocols") or [])
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        address = (scope.get("client") or ("unknown", 0))[0]

        async def refuse(code: int, reason: str, why: str) -> None:
            # ``why`` is the metric label: a short identifier, never the sentence.
            runtime.metrics.rejected_handshakes.labels(why).inc()
            await send({"type": "websocket.accept", "subprotocol": subprotocol})
            await send({"type": "websocket.close", "code": code, "reason": reason})

        if not runtime.accepting:
            await send({"type": "websocket.close", "code": 1012})
            return
        if not _origin_allowed(headers, runtime.allowed_origins):
            runtime.metrics.rejected_handshakes.labels("origin").inc()
            await send({"type": "websocket.close", "code": 1008})  # HTTP 403
            return

        token = (
            bearer_from_header(headers.get("authorization"))
            or bearer_from_subprotocols(offered)
            or (query.get("access_token") or [None])[0]
        )
        try:
            principal = await runtime.verifier.verify(token)
        except TokenError:
            await refuse(CLOSE_TOKEN_INVALID, "unauthorized", "token")
            return

        device_id = (query.get("device_id") or [None])[0] or f"d-{uuid.uuid4().hex[:16]}"
        if not _DEVICE_ID.match(device_id):
            await refuse(CLOSE_ABUSE, "invalid device_id", "device_id")
            return
        requested_text = (query.get("cursor") or [None])[0]
        requested = parse_cursor(requested_text) if requested_text else None

        settings = runtime.settings
        rules = runtime.rules
        waits = await asyncio.gather(
            runtime.limiter.wait_seconds(address_subject(address), rules.handshake_address),
            runtime.limiter.wait_seconds(user_subject(principal.user_id), rules.handshake_user),
        )
        if max(waits) > 0:
            # Reconnect storms and scripted reconnects: refused before any session work.
            await refuse(
                CLOSE_TOO_MANY_CONNECTIONS, "too many connection attempts; retry later", "rate"
            )
            return
        if runtime.sessions.by_address.get(address, 0) >= settings.max_connections_per_ip:
            await refuse(
                CLOSE_TOO_MANY_CONNECTIONS, "too many connections from this address", "address_cap"
            )
            return
        if (
            await runtime.redis.hlen(user_sessions(principal.user_id))
            >= settings.max_connections_per_user
        ):
            await refuse(
                CLOSE_TOO_MANY_CONNECTIONS, "too many connections for this user", "user_cap"
            )
            return

        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        session_id = uuid.uuid4().hex
        session_id_var.set(session_id)
        now = time.time()
        core = SessionCore(
            user_id=principal.user_id,
            device_id=device_id,
            session_id=session_id,
            start_cursor=(0, 0),
            token_expires_at=principal.expires_at,
            limits=runtime.limits,
            now=now,
        )
        history = HistoryClient(runtime.http, settings.history_url, token or "")
        connection = Connection(runtime, send, core, principal, history, address)
        runtime.sessions.add(connection)
        runtime.metrics.connections.inc()
        log.info("session opened", extra={"user_id": principal.user_id, "device_id": device_id})
        writer = asyncio.create_task(connection.write_loop())
        reader: asyncio.Task[int] | None = None
        disconnect_code: int | None = None
        try:
            await runtime.presence.register(connection)
            start = await runtime.inbox.start_point(principal.user_id, device_id, requested)
            core.start_cursor = core.last_cursor = start.cursor
            connection.start(start.cursor if start.resync else None)
            if requested_text and requested is None:
                connection.push_event(frames.error("invalid", "cursor is not an inbox cursor"))
            reader = asyncio.create_task(_read_loop(connection, receive))
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():
                # We closed the socket; uvicorn reports the disconnect right after.
                await asyncio.wait({reader}, timeout=2.0)
            if reader.done() and not reader.cancelled() and reader.exception() is None:
                disconnect_code = reader.result()
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
            connection.close(connection.close_code or 1000, "")
            await asyncio.gather(writer, return_exceptions=True)
            await connection.shutdown()
            runtime.sessions.remove(connection)
            runtime.metrics.connections.dec()
            # Who ended it: our own close code wins over the peer's echo of it.
            ended_with = (
                connection.close_code
                if connection.close_code not in (None, 1000)
                else disconnect_code
            )
            try:
                await runtime.presence.disconnected(connection, ended_with)
            except Exception:
                log.exception("presence cleanup failed")
            runtime.metrics.closes.labels(str(ended_with or 1005)).inc()
            log.info("session closed", extra={"code": ended_with})


async def _read_loop(connection: Connection, receive: Any) -> int:
    """Frames until the peer disconnects (or uvicorn reports our own close)."""
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            connection.receive(message)
        elif kind == "websocket.disconnect":
            return int(message.get("code", 1005))


def _origin_allowed(headers: dict[str, str], allowed: frozenset[str]) -> bool:
    """Browsers send Origin; other clients do not and are not affected."""
    origin = headers.get("origin")
    if origin is None:
        return True
    if origin in allowed:
        return True
    host = headers.get("host", "")
    return urlsplit(origin).netloc == host and bool(host)
