"""The realtime session: what an application holds while it is online.

It sends messages and waits for their confirmation (surviving reconnects without
duplicates), yields typed events (every message once, in seq order per conversation),
acknowledges the inbox cursor in batches as the caller takes events, hands refreshed
access tokens to the live socket, and keeps the device state on disk when asked to.
The socket itself is kept open by :class:`chat_client.connection.Link`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson
from websockets.asyncio.client import ClientConnection

from chat_client.connection import Link, SessionOptions
from chat_client.errors import (
    NotAuthenticated,
    SendRefused,
    SessionClosed,
    TransportError,
    Unauthorized,
)
from chat_client.events import ConnectionChanged, Event
from chat_client.feed import Feed
from chat_client.models import Sent, TokenPair
from chat_client.outbox import Outbox, new_client_id, send_frame
from chat_client.state import DeviceState

if TYPE_CHECKING:
    from chat_client.client import ChatClient

log = logging.getLogger("chat_client")

__all__ = ["RealtimeSession", "SessionOptions"]


class RealtimeSession:
    """Use as ``async with client.connect() as session:``; iterate it for events."""

    def __init__(
        self,
        client: ChatClient,
        *,
        state: DeviceState,
        state_file: Path | None = None,
        options: SessionOptions | None = None,
    ) -> None:
        self._client = client
        self.state = state
        self._state_file = state_file
        self.options = options or SessionOptions()
        self._feed = Feed(
            state, client, backfill_limit=self.options.backfill_limit, on_commit=self._committed
        )
        self._outbox = Outbox(self._write_soon)
        self._link = Link(client, state, self._feed, self._outbox, self.options)
        self._acked_cursor: str | None = None
        self._commits_since_ack = 0
        self._dirty = False
        self._ack_now = asyncio.Event()
        self._closing = False
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] = lambda: None

    # Lifecycle -----------------------------------------------------------------------

    async def start(self) -> RealtimeSession:
        if self._runner is None and not self._closing:
            self._unsubscribe = self._client.tokens.subscribe(self._tokens_changed)
            self._runner = asyncio.create_task(self._run(), name="chat-session")
            self._spawn(self._ack_loop())
            self._spawn(self._refresh_loop())
        return self

    async def __aenter__(self) -> RealtimeSession:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Acknowledge what was taken, close the socket, fail unconfirmed sends with
        :class:`SessionClosed` and end the event iteration (after queued events)."""
        if self._closing:
            await self._done.wait()
            return
        self._closing = True
        await self._flush_ack()
        self._link.stop()
        ws = self._link.socket
        if ws is not None:
            await ws.close()
        runner = self._runner
        if runner is None:
            self._finish(None)
            return
        try:
            await asyncio.wait_for(asyncio.shield(runner), self.options.connect_timeout)
        except TimeoutError:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        self._finish(None)

    async def _run(self) -> None:
        error: BaseException | None = None
        try:
            error = await self._link.run()
        except Exception as exc:
            # A bad URL or a bug: end the session and let the caller see why.
            log.exception("the realtime session failed")
            error = exc
        finally:
            self._finish(error)

    def _finish(self, error: BaseException | None) -> None:
        if self._done.is_set():
            return
        self._closing = True
        self._link.stop()
        self._unsubscribe()
        for task in self._tasks:
            task.cancel()
        self._outbox.fail_all(error or SessionClosed("the session is closed"))
        self._feed.emit(ConnectionChanged("closed", reason=str(error or "")))
        self._feed.end(error)
        try:
            self.save_state()
        except OSError as exc:
            log.warning("could not save the device state: %s", exc)
        self._done.set()

    def save_state(self) -> None:
        """Write the state file now (also done as acks go out and at the end)."""
        if self._state_file is not None:
            self.state.save(self._state_file)
            self._dirty = False

    @property
    def connected(self) -> bool:
        return self._link.live is not None

    @property
    def closed(self) -> bool:
        return self._done.is_set()

    @property
    def user_id(self) -> str | None:
        """Who the gateway says we are (from ``hello``)."""
        return self._link.user_id

    @property
    def session_id(self) -> str | None:
        return self._link.session_id

    @property
    def websocket(self) -> ClientConnection | None:
        """The socket in use, if any (for diagnostics; the session owns it)."""
        return self._link.socket

    @property
    def unconfirmed_sends(self) -> int:
        return len(self._outbox)

    async def wait_connected(self) -> None:
        """Until a socket is up and past its ``hello`` (bound it with
        ``asyncio.timeout``); SessionClosed if the session ends instead."""
        while not self._link.connected.is_set():
            if self._done.is_set():
                raise SessionClosed("the session is closed")
            waiter = asyncio.ensure_future(self._link.connected.wait())
            ender = asyncio.ensure_future(self._done.wait())
            try:
                await asyncio.wait({waiter, ender}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                ender.cancel()

    # Events ------------------------------------------------------------------------

    def __aiter__(self) -> RealtimeSession:
        return self

    async def __anext__(self) -> Event:
        """The next event. Taking a message commits it to the device state. After
        the session ends, iteration stops (raising the error that ended it, if any)."""
        try:
            return await self._feed.next()
        except StopAsyncIteration:
            with contextlib.suppress(OSError):
                self.save_state()
            raise

    # Sending -----------------------------------------------------------------------

    async def send(self, conversation_id: str, body: str, *, client_id: str | None = None) -> Sent:
        """Post a message and wait for the gateway's confirmation. Survives reconnects:
        the same ``client_id`` is written again until confirmed, never duplicating.

        Bound the wait with ``asyncio.timeout``; a cancelled send stops being retried,
        and sending again with the same ``client_id`` is safe either way."""
        if self._closing:
            raise SessionClosed("the session is closed")
        client_id = client_id or new_client_id()
        frame = send_frame(client_id, conversation_id, body)
        if len(frame.encode()) > self.options.max_frame_bytes:
            raise SendRefused("too_large", "message is over the frame size limit", client_id)
        pending = self._outbox.add(client_id, conversation_id, body)
        self._write_soon(pending.frame)
        try:
            return await asyncio.shield(pending.future)
        except asyncio.CancelledError:
            self._outbox.forget(client_id)
            raise

    async def mark_read(self, conversation_id: str, seq: int) -> None:
        """Tell the other members (and your other devices) you read up to ``seq``;
        over REST while disconnected."""
        frame = {"type": "read", "conversation_id": conversation_id, "seq": seq}
        if not await self._link.write(orjson.dumps(frame).decode()):
            await self._client.mark_read(conversation_id, seq)

    async def typing(self, conversation_id: str, active: bool = True) -> None:
        """Advisory typing indicator; dropped while disconnected."""
        frame = {"type": "typing", "conversation_id": conversation_id, "active": active}
        await self._link.write(orjson.dumps(frame).decode())

    def _write_soon(self, text: str) -> None:
        if self._link.live is not None:
            self._spawn(self._link.write(text))

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Acknowledgements and tokens -----------------------------------------------------

    def _committed(self) -> None:
        self._dirty = True
        if self.state.cursor != self._acked_cursor:
            self._commits_since_ack += 1
            if self._commits_since_ack >= self.options.ack_every:
                self._ack_now.set()

    async def _ack_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ack_now.wait(), self.options.ack_interval)
            self._ack_now.clear()
            await self._flush_ack()

    async def _flush_ack(self) -> None:
        cursor = self.state.cursor
        if cursor is not None and cursor != self._acked_cursor:
            frame = orjson.dumps({"type": "ack", "cursor": cursor}).decode()
            if await self._link.write(frame):
                self._acked_cursor = cursor
                self._commits_since_ack = 0
        if self._dirty:
            try:
                self.save_state()
            except OSError as exc:
                log.warning("could not save the device state: %s", exc)

    def _tokens_changed(self, pair: TokenPair | None) -> None:
        if pair is not None:
            self._write_soon(orjson.dumps({"type": "auth", "token": pair.access_token}).decode())

    async def _refresh_loop(self) -> None:
        """Renew the access token before it expires even when no REST call does."""
        tokens = self._client.tokens
        while True:
            due = tokens.refresh_due_at()
            wait = 5.0 if due is None else min(60.0, max(0.0, due - time.time()))
            await asyncio.sleep(wait)
            pair = tokens.pair
            due = tokens.refresh_due_at()
            if pair is None or due is None or time.time() < due:
                continue
            try:
                await tokens.refresh(stale=pair.access_token)
            except (NotAuthenticated, Unauthorized):
                return  # the socket will be refused (4401) and the session ends
            except TransportError:
                await asyncio.sleep(2.0)
