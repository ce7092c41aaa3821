"""Keeps one WebSocket open at a time for a :class:`RealtimeSession`.

Each connection opens with the device id and the last inbox cursor, waits for
``hello``, writes every unconfirmed send again, then reads frames into the feed
(which dedupes, fills gaps and handles ``resync``) and the outbox (``sent`` and
refusals). It pings at the interval ``hello`` announces and drops a link that has gone
silent. Between connections it waits with exponential backoff and jitter; after 4401
(token refused) it refreshes the token and reconnects at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from chat_client.errors import NotAuthenticated, SessionClosed, TransportError, Unauthorized
from chat_client.events import (
    ConnectionChanged,
    ErrorReceived,
    PresenceChanged,
    ReceiptReceived,
    TypingChanged,
)
from chat_client.feed import Feed, FillFailed
from chat_client.models import Message, Presence
from chat_client.outbox import Outbox
from chat_client.state import DeviceState

if TYPE_CHECKING:
    from chat_client.client import ChatClient

log = logging.getLogger("chat_client")

CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_MANY_CONNECTIONS = 4429
# Closes after which reconnecting cannot help: the server refuses this client by policy.
FATAL_CLOSE_CODES = frozenset({1008})
PING = '{"type":"ping"}'


@dataclass(frozen=True)
class SessionOptions:
    connect_timeout: float = 10.0
    backoff_initial: float = 0.25
    backoff_max: float = 30.0
    # Backoff floor after 4429 (too many connections): the limit will not lift at once.
    crowded_backoff: float = 5.0
    # A connection that lived this long counts as healthy and resets the backoff.
    healthy_after: float = 10.0
    ack_every: int = 50
    ack_interval: float = 1.0
    backfill_limit: int = 200
    max_frame_bytes: int = 256 * 1024
    # Silence (no frame at all) for this many heartbeat intervals means a dead link.
    dead_after_heartbeats: float = 3.0


class _NoHello(Exception):
    """The server's first frame was not ``hello``: not a chat gateway, or broken."""


@dataclass(frozen=True)
class _Outcome:
    code: int | None
    reason: str
    healthy: bool


class Link:
    def __init__(
        self,
        client: ChatClient,
        state: DeviceState,
        feed: Feed,
        outbox: Outbox,
        options: SessionOptions,
    ) -> None:
        self._client = client
        self._state = state
        self._feed = feed
        self._outbox = outbox
        self._options = options
        self._resume_cursor = state.cursor
        self._stopping = False
        self._wake = asyncio.Event()
        self._last_received = 0.0
        self._dispatching = False
        self.connected = asyncio.Event()
        self.socket: ClientConnection | None = None  # open socket
        self.live: ClientConnection | None = None  # open socket past its hello
        self.user_id: str | None = None
        self.session_id: str | None = None
        self.heartbeat_interval = 5.0

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def write(self, text: str) -> bool:
        """Write on the live socket; False when there is none or it just closed."""
        ws = self.live
        if ws is None:
            return False
        return await _write(ws, text)

    async def run(self) -> BaseException | None:
        """Connect and reconnect until stopped; the error that ended it, if any."""
        failures = 0
        refused_tokens = 0
        attempt = 0
        while not self._stopping:
            attempt += 1
            self._feed.emit(ConnectionChanged("connecting", attempt=attempt))
            try:
                outcome = await self._connect_once(attempt)
            except (NotAuthenticated, Unauthorized) as exc:
                return exc  # no token and none to be had: log in again
            if self._stopping:
                return None
            if outcome.code in FATAL_CLOSE_CODES:
                return SessionClosed(f"closed by the server: {outcome.code} {outcome.reason}")
            failures = 0 if outcome.healthy else failures
            delay = self._backoff(failures, outcome.code)
            failures += 1
            if outcome.code == CLOSE_UNAUTHORIZED:
                refused_tokens += 1
                try:
                    await self._client.tokens.refresh()
                except (NotAuthenticated, Unauthorized) as exc:
                    return exc
                except TransportError:
                    pass  # the auth service is away: retry after the backoff
                else:
                    if refused_tokens == 1:
                        delay = 0.0  # a fresh token should simply work
            else:
                refused_tokens = 0
            self._feed.emit(
                ConnectionChanged(
                    "disconnected",
                    attempt=attempt,
                    close_code=outcome.code,
                    reason=outcome.reason,
                    retry_in=delay,
                )
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
        return None

    def _backoff(self, failures: int, code: int | None) -> float:
        options = self._options
        ceiling = min(options.backoff_max, options.backoff_initial * 2.0**failures)
        if code == CLOSE_TOO_MANY_CONNECTIONS:
            ceiling = max(ceiling, options.crowded_backoff)
        # Half fixed, half random: spreads a crowd of clients after a gateway restart.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _connect_once(self, attempt: int) -> _Outcome:
        try:
            token = await self._client.tokens.access_token()
        except TransportError as exc:
            # The token is due and the auth service is unreachable: back off like
            # any other network failure.
            return _Outcome(None, str(exc), healthy=False)
        query = {"device_id": self._state.device_id}
        if self._resume_cursor:
            query["cursor"] = self._resume_cursor
        url = f"{self._client.websocket_url}?{urlencode(query)}"
        hello_at: float | None = None
        code: int | None = None
        reason = ""
        try:
            async with connect(
                url,
                additional_headers={"Authorization": f"Bearer {token}"},
                open_timeout=self._options.connect_timeout,
                ping_interval=None,  # the protocol has its own heartbeat
                close_timeout=2,
                max_size=2**24,
                compression=None,
                user_agent_header="chat-client-python",
            ) as ws:
                self.socket = ws
                hello = await asyncio.wait_for(ws.recv(), self._options.connect_timeout)
                hello_at = time.monotonic()
                await self._serve(ws, orjson.loads(hello), attempt)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            reason = exc.rcvd.reason if exc.rcvd else "connection lost"
        except InvalidStatus as exc:
            status = exc.response.status_code
            code = CLOSE_UNAUTHORIZED if status == 401 else None
            reason = f"handshake refused with HTTP {status}"
        except (OSError, InvalidHandshake, TimeoutError, orjson.JSONDecodeError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        except (FillFailed, _NoHello) as exc:
            # Reconnect from the cursor before the unfinished work and try again.
            reason = str(exc)
        finally:
            self.socket = self.live = None
            self.connected.clear()
        lived = time.monotonic() - hello_at if hello_at is not None else 0.0
        return _Outcome(code, reason, hello_at is not None and lived >= self._options.healthy_after)

    async def _serve(self, ws: ClientConnection, hello: Any, attempt: int) -> None:
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            raise _NoHello("the server did not start with hello")
        resumed = self._resume_cursor is not None
        self.user_id = str(hello.get("user_id"))
        self.session_id = str(hello.get("session_id"))
        interval_ms = hello.get("heartbeat_interval_ms")
        if isinstance(interval_ms, int) and interval_ms > 0:
            self.heartbeat_interval = interval_ms / 1000
        start = hello.get("cursor")
        if self._resume_cursor is None and isinstance(start, str) and start:
            # A new device starts at the end of its inbox: nothing before is owed.
            self._resume_cursor = start
            if self._state.cursor is None:
                self._feed.mark(start)
        self._last_received = time.monotonic()
        # Go live and snapshot the outbox with no await in between: a send() racing
        # this either lands in the snapshot or writes itself, never neither.
        self.live = ws
        backlog = self._outbox.frames()
        self.connected.set()
        self._feed.emit(
            ConnectionChanged(
                "connected", attempt=attempt, session_id=self.session_id, resumed=resumed
            )
        )
        for frame in backlog:
            await _write(ws, frame)
        heartbeat = asyncio.create_task(self._heartbeat(ws))
        try:
            while True:
                raw = await ws.recv()
                self._last_received = time.monotonic()
                self._dispatching = True
                try:
                    await self._dispatch(orjson.loads(raw))
                finally:
                    self._dispatching = False
                    self._last_received = time.monotonic()
        finally:
            heartbeat.cancel()

    async def _dispatch(self, frame: Any) -> None:
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        try:
            if kind == "message":
                cursor = _text(frame.get("cursor"))
                await self._feed.live(Message.from_json(frame["message"]), cursor)
                if cursor is not None:
                    self._resume_cursor = cursor
            elif kind == "sent":
                self._outbox.confirm(frame)
            elif kind == "resync":
                cursor = _text(frame.get("cursor"))
                await self._feed.resync(str(frame.get("reason", "")), cursor)
                if cursor is not None:
                    self._resume_cursor = cursor
            elif kind == "receipt":
                self._feed.emit(
                    ReceiptReceived(
                        str(frame["conversation_id"]), str(frame["user_id"]), int(frame["seq"])
                    )
                )
            elif kind == "typing":
                self._feed.emit(
                    TypingChanged(
                        str(frame["conversation_id"]), str(frame["user_id"]), bool(frame["active"])
                    )
                )
            elif kind == "presence":
                presence = Presence.from_json(frame)
                self._feed.emit(
                    PresenceChanged(presence.user_id, presence.status, presence.last_active_at)
                )
            elif kind == "error" and not self._outbox.refuse(frame):
                self._feed.emit(
                    ErrorReceived(str(frame.get("code", "")), str(frame.get("message", "")))
                )
            # pong needs nothing; unknown types come from newer servers and are skipped.
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("skipping a malformed %s frame: %s", kind, exc)

    async def _heartbeat(self, ws: ClientConnection) -> None:
        while True:
            interval = self.heartbeat_interval
            await asyncio.sleep(interval)
            silent = time.monotonic() - self._last_received
            if not self._dispatching and silent > interval * self._options.dead_after_heartbeats:
                log.info("no frame for %.1fs; dropping the connection", silent)
                ws.transport.abort()
                return
            await _write(ws, PING)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


async def _write(ws: ClientConnection, text: str) -> bool:
    try:
        await ws.send(text)
    except ConnectionClosed:
        return False
    return True
