"""One WebSocket session: the thin I/O layer around :class:`SessionCore`.

It feeds the core what arrives (frames, live deliveries, ticks), carries out the effects
the core returns (write a frame, ingest, store a cursor, read the inbox...), and reports
outcomes back to the core. Writes go through a queue drained by one writer task, which
waits whenever the socket's buffer is full (the peer is not reading). The queue is
bounded in frames and bytes; when it is full, live messages are not queued but left in
the durable inbox, and the session reads them back in pages as fast as the socket
drains (flow control), so a slow reader lags and catches up instead of being dropped,
and never slows anybody else. Only a reader that takes nothing at all for
``stalled_reader_seconds`` is closed, with 1013, and resumes from its cursor.
Ephemeral events (typing, presence, receipts) are dropped while the queue is full.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from chat_gateway import frames
from chat_gateway.cursors import Cursor, format_cursor, parse_cursor
from chat_gateway.protocol import (
    CLOSE_SLOW_READER,
    Close,
    Effect,
    FetchInbox,
    Ingest,
    MarkRead,
    PublishTyping,
    Reauthenticate,
    Send,
    SessionCore,
    StoreCursor,
)
from chat_shared.errors import ChatError, Unavailable
from chat_shared.limits import user_subject
from chat_shared.logs import session_id_var
from chat_shared.tokens import Principal, TokenError

if TYPE_CHECKING:
    from chat_gateway.runtime import GatewayRuntime
    from chat_gateway.upstream import HistoryClient

log = logging.getLogger(__name__)

ASGISend = Callable[[dict[str, Any]], Awaitable[None]]
REPLAY_PAGE = 500
CLOSE_SEND_TIMEOUT = 5.0
SHUTDOWN_DRAIN_SECONDS = 1.0


class Answer(str):
    """A queued frame that answers a send (see ``_answer_then_close``)."""

    __slots__ = ()


class Connection:
    def __init__(
        self,
        runtime: GatewayRuntime,
        send: ASGISend,
        core: SessionCore,
        principal: Principal,
        history: HistoryClient,
        address: str,
    ) -> None:
        self.runtime = runtime
        self._asgi_send = send
        self.core = core
        self.principal = principal
        self.history = history
        self.address = address
        self.user_id = core.user_id
        self.device_id = core.device_id
        self.session_id = core.session_id
        self.queue: deque[str] = deque()
        self.queued_bytes = 0
        self.max_queue = runtime.settings.send_queue_frames
        self.max_queue_bytes = runtime.settings.send_queue_bytes
        self.stalled_after = runtime.settings.stalled_reader_seconds
        # When the writer last finished a frame, or found the queue empty.
        self.last_drained = time.monotonic()
        self.frame_size = 1024  # a guess until the first replay page says better
        self._has_frames = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._tasks: set[asyncio.Future[None]] = set()
        # Sends on their way to Redis: a closing session waits for their answers.
        self._ingests: set[asyncio.Future[None]] = set()
        self.close_code: int | None = None
        # Answers to sends still to be written when the session closes.
        self.answers: list[str] = []
        self.closed = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None

    # Feeding the core --------------------------------------------------------------

    def start(self, resync_to: Cursor | None) -> None:
        effects = self.core.start()
        if resync_to is not None:
            effects = [effects[0], *self.core.resync("cursor_too_old", resync_to), effects[1]]
            # The replay continues from the new position.
            effects[-1] = FetchInbox(format_cursor(self.core.last_cursor))
        self.apply(effects)

    def receive(self, message: dict[str, Any]) -> None:
        now = time.time()
        text = message.get("text")
        if text is not None:
            self.runtime.metrics.frames_in.inc()
            self.apply(self.core.receive_text(text, now))
        else:
            self.apply(self.core.receive_binary(now))

    def deliver(self, cursor: Cursor, prev: Cursor, text: str) -> None:
        self.apply(self.core.deliver(cursor, prev, text, has_room=self.has_room()))

    def push_event(self, text: str) -> None:
        """An ephemeral event: sent if there is room, dropped otherwise."""
        if not self.core.closed and self.has_room():
            self._enqueue(text)

    def has_room(self) -> bool:
        return len(self.queue) < self.max_queue and self.queued_bytes < self.max_queue_bytes

    def _half_empty(self) -> bool:
        return (
            len(self.queue) <= self.max_queue // 2
            and self.queued_bytes <= self.max_queue_bytes // 2
        )

    def tick(self, now: float) -> None:
        if self.queue and time.monotonic() - self.last_drained > self.stalled_after:
            self.runtime.metrics.slow_reader_closes.inc()
            self.queue.clear()
            self.queued_bytes = 0
            self.close(CLOSE_SLOW_READER, "stopped reading; reconnect with your cursor")
            return
        self.apply(self.core.tick(now))

    def revoke(self) -> None:
        self.apply(self.core.revoke())

    # Effects ---------------------------------------------------------------------------

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case Send(text, answer):
                    self._enqueue(text, answer=answer)
                case Close(code, reason):
                    self.close(code, reason)
                case Ingest():
                    self._ingests.add(self._spawn(self._ingest(effect)))
                case FetchInbox(after):
                    self._spawn(self._fetch(after))
                case StoreCursor(cursor):
                    self._spawn(self._store_cursor(cursor))
                case MarkRead():
                    self._spawn(self._mark_read(effect))
                case PublishTyping():
                    self._spawn(self._typing(effect))
                case Reauthenticate(token):
                    self._spawn(self._reauthenticate(token))

    def _spawn(self, work: Awaitable[None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        self._ingests.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("session task failed", exc_info=exc, extra={"session_id": self.session_id})

    async def _ingest(self, effect: Ingest) -> None:
        try:
            message = await self.runtime.ingest.ingest(
                effect.conversation_id,
                self.user_id,
                effect.client_id,
                effect.body,
                seq_source=self.history,
                members=self.history,
            )
        except ChatError as exc:
            self.apply(self.core.ingest_failed(effect.client_id, exc))
        except (RedisError, OSError) as exc:
            log.warning("ingest failed", extra={"error": type(exc).__name__})
            self.apply(
                self.core.ingest_failed(
                    effect.client_id, Unavailable("The message was not stored; retry it.")
                )
            )
        else:
            self.runtime.metrics.messages_sent.inc()
            self.apply(self.core.ingested(message))

    async def _fetch(self, after: str) -> None:
        start = parse_cursor(after)
        if start is None:
            return
        # Replay only as fast as the client reads: wait for room in the queue.
        while not self._half_empty() and not self.core.closed:
            self._room.clear()
            await self._room.wait()
        # Sized to the room in frames and, by the size of the last page's frames, in
        # bytes: a page of big messages never overshoots the byte bound by much.
        room_bytes = max(0, self.max_queue_bytes - self.queued_bytes)
        count = max(
            1,
            min(REPLAY_PAGE, self.max_queue - len(self.queue), room_bytes // self.frame_size),
        )
        try:
            page = await self.runtime.inbox.page(self.user_id, start, count)
        except (RedisError, OSError) as exc:
            # The core holds live entries until this page arrives; without it the session
            # would stall. Close it instead: the client resumes by cursor.
            log.warning("inbox read failed", extra={"error": type(exc).__name__})
            self.close(CLOSE_SLOW_READER, "inbox unavailable; reconnect with your cursor")
            return
        entries = [
            (cursor, frames.message(format_cursor(cursor), payload.decode()))
            for cursor, payload in page
        ]
        if entries:
            self.frame_size = max(1, sum(len(text) for _, text in entries) // len(entries))
        self.apply(self.core.inbox_page(entries, complete=len(page) < count))

    async def _store_cursor(self, cursor: str) -> None:
        await self.runtime.inbox.store_cursor(self.user_id, self.device_id, cursor)

    async def _mark_read(self, effect: MarkRead) -> None:
        try:
            await self.runtime.receipts.mark_read(self.user_id, effect.conversation_id, effect.seq)
        except ChatError as exc:
            self.apply(self.core.effect_refused(exc))

    async def _typing(self, effect: PublishTyping) -> None:
        try:
            await self.runtime.receipts.typing(self.user_id, effect.conversation_id, effect.active)
        except ChatError as exc:
            self.apply(self.core.effect_refused(exc))

    async def _reauthenticate(self, token: str) -> None:
        try:
            # Each renewal costs a signature check: limited per user over all sockets.
            await self.runtime.limiter.check(user_subject(self.user_id), self.runtime.rules.auth)
        except ChatError as exc:
            self.apply(self.core.effect_refused(exc))
            return
        try:
            principal = await self.runtime.verifier.verify(token)
        except TokenError as exc:
            self._enqueue(frames.error("invalid", exc.detail))
            return
        if principal.user_id != self.user_id:
            self._enqueue(frames.error("invalid", "token belongs to another user"))
            return
        self.principal = principal
        self.history.token = token
        self.apply(self.core.reauthenticated(principal.expires_at))

    # Writing ---------------------------------------------------------------------------

    def _enqueue(self, text: str, *, answer: bool = False) -> None:
        # Messages wait in the inbox while the queue is full, and events are dropped,
        # so what still arrives here then is the session's own traffic (hello, acks,
        # errors, replay pages sized to the room): bounded by the send rate limits.
        if self.close_code is not None:
            if answer:
                self.answers.append(text)
            return
        self.queue.append(Answer(text) if answer else text)
        self.queued_bytes += len(text)
        self._has_frames.set()

    def close(self, code: int, reason: str) -> None:
        if self.close_code is not None:
            return
        self.close_code = code
        self.answers = [text for text in self.queue if isinstance(text, Answer)]
        self.core.closed = True
        self._has_frames.set()
        self._room.set()

    async def write_loop(self) -> None:
        send = self._asgi_send
        queue = self.queue
        frames_out = self.runtime.metrics.frames_out
        try:
            while True:
                while queue and self.close_code is None:
                    text = queue.popleft()
                    await send({"type": "websocket.send", "text": text})
                    self.queued_bytes -= len(text)
                    self.last_drained = time.monotonic()
                    frames_out.inc()
                    if not self._room.is_set() and self._half_empty():
                        self._room.set()
                if self.close_code is not None:
                    break
                self.last_drained = time.monotonic()
                self._has_frames.clear()
                await self._has_frames.wait()
            # A reader that stopped reading may never take the close frame: bound it.
            await asyncio.wait_for(self._answer_then_close(send), CLOSE_SEND_TIMEOUT)
        except (TimeoutError, OSError):
            pass
        except Exception as exc:  # uvicorn raises ClientDisconnected once the peer is gone
            if type(exc).__name__ != "ClientDisconnected":
                raise
        finally:
            self.closed.set()

    async def _answer_then_close(self, send: ASGISend) -> None:
        """Before the close frame, the answers to sends already made: the sends still
        on their way to Redis are waited for (briefly), and every `sent` or send error
        goes out, so that the client knows which messages are stored and resends only
        the others. Nothing else queued is written. A slow reader's queue was dropped
        already; it resumes from its cursor and gets its acks by retrying (idempotent)."""
        if self._ingests and self.close_code != CLOSE_SLOW_READER:
            await asyncio.wait(set(self._ingests), timeout=SHUTDOWN_DRAIN_SECONDS)
        for text in self.answers:
            await send({"type": "websocket.send", "text": text})
        self.answers.clear()
        await send(
            {"type": "websocket.close", "code": self.close_code, "reason": self._close_reason()}
        )

    def _close_reason(self) -> str:
        return {
            1013: "slow reader",
            4401: "unauthorized",
            4408: "heartbeat timeout",
            1008: "policy violation",
        }.get(self.close_code or 0, "")

    async def shutdown(self) -> None:
        # Let work already under way land (a cursor acked just before a clean close,
        # a read marker, an ingest already sent to Redis), then cancel what is left.
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_DRAIN_SECONDS)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        session_id_var.set(None)
