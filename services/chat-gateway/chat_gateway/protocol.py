"""The protocol core of one WebSocket session: frames and events in, effects out.

Pure and synchronous: no sockets, no Redis, no clock of its own (callers pass ``now``).
The I/O layer (``connection.py``) feeds it what happens and carries out the effects it
returns, then reports the outcome back (``ingested``, ``inbox_page``...). Unit tests
drive it directly.

Delivery order. Every inbox entry travels with the id of the entry before it in the
same inbox (``prev``). The core remembers the last cursor it sent; a live entry whose
``prev`` is at or before that cursor is the next one and goes straight out. Otherwise an
entry is missing (deliveries from different shards can overtake each other, or a page
is still being replayed), so the core asks for the inbox after its last cursor
(``FetchInbox``) and holds live entries until the page arrives. That keeps every
session gap-free and duplicate-free without ordering the delivery streams globally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from chat_gateway import frames
from chat_gateway.cursors import Cursor, format_cursor, parse_cursor
from chat_shared.errors import ChatError, RateLimited
from chat_shared.ingest import DEFAULT_MAX_MESSAGE_CHARS, MAX_CLIENT_ID_CHARS, IngestedMessage

CLOSE_TOKEN_INVALID = 4401
CLOSE_HEARTBEAT_TIMEOUT = 4408
CLOSE_TOO_MANY_CONNECTIONS = 4429
CLOSE_ABUSE = 1008
CLOSE_RESTARTING = 1012
CLOSE_SLOW_READER = 1013
# Live entries a fetching session holds at most; past that it drops them and reads
# them from the inbox instead (they are there already).
MAX_HELD_LIVE = 256


# Effects the I/O layer carries out.


@dataclass(frozen=True, slots=True)
class Send:
    text: str
    # The answer to a send (`sent`, or its refusal): still written when the session
    # is closing, so a client closed for abuse learns which of its messages are stored.
    answer: bool = False


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Ingest:
    client_id: str
    conversation_id: str
    body: str


@dataclass(frozen=True, slots=True)
class StoreCursor:
    cursor: str


@dataclass(frozen=True, slots=True)
class MarkRead:
    conversation_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class PublishTyping:
    conversation_id: str
    active: bool


@dataclass(frozen=True, slots=True)
class FetchInbox:
    after: str


@dataclass(frozen=True, slots=True)
class Reauthenticate:
    token: str


Effect = (
    Send | Close | Ingest | StoreCursor | MarkRead | PublishTyping | FetchInbox | Reauthenticate
)


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass(frozen=True)
class SessionLimits:
    # Sends are limited per user over every socket and process, in the shared ingest
    # (its refusals come back through ``ingest_failed``); the rest here, per socket.
    typing_rate: float = 2.0
    # Every other frame (ack, read, ping, auth, and malformed ones, which get an error
    # frame back): one budget per socket, so that no flood of cheap frames turns into
    # unbounded work or output. The per-user limits in Redis come after it.
    frame_rate: float = 50.0
    frame_burst: int = 200
    max_chars: int = DEFAULT_MAX_MESSAGE_CHARS
    heartbeat_interval: float = 5.0
    presence_timeout: float = 30.0
    # Rate-limited frames tolerated per window before the client counts as hammering
    # (malformed frames are answered, never punished: they cost us one parse).
    max_refusals: int = 200
    refusal_window: float = 10.0


@dataclass
class SessionCore:
    user_id: str
    device_id: str
    session_id: str
    start_cursor: Cursor
    token_expires_at: float
    limits: SessionLimits = field(default_factory=SessionLimits)
    now: float = 0.0

    def __post_init__(self) -> None:
        self.last_cursor: Cursor = self.start_cursor
        # Until the first inbox page after ``start`` arrives, live entries are held:
        # the session is registered (and receiving) before its start cursor is known.
        self.fetching = True
        self.held: list[tuple[Cursor, Cursor, str]] = []
        # Live entries dropped while fetching (too many to hold): the fetch must go
        # round once more when it completes, since they may have arrived after it read.
        self.refetch = False
        self.last_heartbeat = self.now
        self.closed = False
        self.typing = TokenBucket(self.limits.typing_rate, max(1.0, self.limits.typing_rate * 2))
        self.frames = TokenBucket(self.limits.frame_rate, self.limits.frame_burst)
        self.deferred_ack: Cursor | None = None
        self.refusals: list[float] = []

    # Session lifecycle ---------------------------------------------------------------

    def start(self) -> list[Effect]:
        """The hello frame, then a replay of everything after the start cursor."""
        hello = frames.hello(
            self.user_id,
            self.device_id,
            self.session_id,
            int(self.limits.heartbeat_interval * 1000),
            format_cursor(self.start_cursor),
        )
        self.fetching = True
        return [Send(hello), FetchInbox(format_cursor(self.last_cursor))]

    def tick(self, now: float) -> list[Effect]:
        """Called periodically: heartbeat and token expiry."""
        self.now = now
        if self.closed:
            return []
        if now - self.last_heartbeat > self.limits.presence_timeout:
            return self._close(CLOSE_HEARTBEAT_TIMEOUT, "no heartbeat")
        if now >= self.token_expires_at:
            return self._close(CLOSE_TOKEN_INVALID, "access token expired")
        if self.deferred_ack is not None:
            cursor, self.deferred_ack = self.deferred_ack, None
            return [StoreCursor(format_cursor(cursor))]
        return []

    def revoke(self) -> list[Effect]:
        return self._close(CLOSE_TOKEN_INVALID, "session revoked")

    def _close(self, code: int, reason: str) -> list[Effect]:
        if self.closed:
            return []
        self.closed = True
        effects: list[Effect] = []
        if self.deferred_ack is not None:  # what the client acknowledged stays so
            effects.append(StoreCursor(format_cursor(self.deferred_ack)))
            self.deferred_ack = None
        return [*effects, Close(code, reason)]

    # Client frames ---------------------------------------------------------------------

    def receive_text(self, raw: str | bytes, now: float) -> list[Effect]:
        self.now = now
        if self.closed:
            return []
        self.last_heartbeat = now
        try:
            frame = frames.parse_client_frame(raw)
        except frames.BadFrame as exc:
            return self._over_frame_budget() or self._refuse(
                "bad_frame", exc.message, exc.client_id
            )
        match frame:
            case frames.SendFrame():
                return self._send(frame)
            case frames.TypingFrame():
                if self.typing.take(now) > 0:
                    return []  # typing is advisory: excess is dropped silently
                return [PublishTyping(frame.conversation_id, frame.active)]
            case frames.AckFrame():
                return self._ack(frame.cursor)
        if over := self._over_frame_budget():
            return over
        match frame:
            case frames.PingFrame():
                return [Send(frames.pong())]
            case frames.ReadFrame():
                if frame.seq < 1 or frame.seq > 2**53:
                    return self._refuse("invalid", "seq is out of range")
                return [MarkRead(frame.conversation_id, frame.seq)]
            case frames.AuthFrame():
                return [Reauthenticate(frame.token)]
        return self._refuse("bad_frame", "unsupported frame")

    def receive_binary(self, now: float) -> list[Effect]:
        self.now = now
        self.last_heartbeat = now
        return self._over_frame_budget() or self._refuse(
            "bad_frame", "binary frames are not part of the protocol"
        )

    def _ack(self, text: str) -> list[Effect]:
        # Acks are cumulative: over the frame budget they are not refused but folded
        # into the newest one, which the next tick stores. A flood of acks costs a parse
        # each and one cursor write per tick.
        cursor = parse_cursor(text)
        if cursor is None:
            return self._over_frame_budget() or self._refuse(
                "invalid", "cursor is not an inbox cursor"
            )
        if self.frames.take(self.now) > 0:
            if self.deferred_ack is None or cursor > self.deferred_ack:
                self.deferred_ack = cursor
            return []
        return [StoreCursor(text)]

    def _over_frame_budget(self) -> list[Effect]:
        wait = self.frames.take(self.now)
        if wait <= 0:
            return []
        return self._refuse(
            "rate_limited", "too many frames; slow down", retry_after_ms=math.ceil(wait * 1000)
        )

    def _send(self, frame: frames.SendFrame) -> list[Effect]:
        client_id = frame.client_id
        if not 1 <= len(client_id) <= MAX_CLIENT_ID_CHARS:
            return self._refuse(
                "invalid",
                f"client_id must be 1-{MAX_CLIENT_ID_CHARS} characters",
                client_id[:MAX_CLIENT_ID_CHARS],
            )
        if len(frame.body) > self.limits.max_chars:
            return self._refuse(
                "too_large", f"body is longer than {self.limits.max_chars} characters", client_id
            )
        if not frame.body.strip():
            return self._refuse("invalid", "body must not be empty or whitespace only", client_id)
        return [Ingest(client_id, frame.conversation_id, frame.body)]

    def _refuse(
        self,
        code: str,
        detail: str,
        client_id: str | None = None,
        retry_after_ms: int | None = None,
    ) -> list[Effect]:
        effects: list[Effect] = [Send(frames.error(code, detail, client_id, retry_after_ms))]
        if code != "rate_limited":
            return effects
        horizon = self.now - self.limits.refusal_window
        self.refusals = [t for t in self.refusals if t > horizon]
        self.refusals.append(self.now)
        if len(self.refusals) > self.limits.max_refusals:
            effects += self._close(CLOSE_ABUSE, "too many rate-limited frames")
        return effects

    # Outcomes of effects -------------------------------------------------------------

    def ingested(self, message: IngestedMessage) -> list[Effect]:
        return [
            Send(
                frames.sent(
                    message.client_id,
                    message.conversation_id,
                    message.id,
                    message.seq,
                    message.created_at,
                ),
                answer=True,
            )
        ]

    def ingest_failed(self, client_id: str, error: ChatError) -> list[Effect]:
        if isinstance(error, RateLimited):
            return self._refuse(
                "rate_limited", error.detail, client_id, retry_after_ms=error.retry_after_ms
            )
        code = {404: "not_member", 413: "too_large"}.get(
            error.status, "invalid" if error.status == 422 else "unavailable"
        )
        return [Send(frames.error(code, error.detail, client_id), answer=True)]

    def effect_refused(self, error: ChatError) -> list[Effect]:
        """A read, typing or auth frame the I/O layer refused (not a member, seq too
        far, over the user's limit...)."""
        if isinstance(error, RateLimited):
            return self._refuse("rate_limited", error.detail, retry_after_ms=error.retry_after_ms)
        code = "not_member" if error.status == 404 else "invalid"
        return self._refuse(code, error.detail)

    def reauthenticated(self, expires_at: float) -> list[Effect]:
        self.token_expires_at = expires_at
        return []

    # Inbox delivery --------------------------------------------------------------------

    def deliver(
        self, cursor: Cursor, prev: Cursor, text: str, *, has_room: bool = True
    ) -> list[Effect]:
        """A live inbox entry for this user. ``has_room`` is false when the socket's
        queue is full: the entry is then left in the inbox (it is durable there) and
        the session catches up by fetching pages as fast as the socket drains. This is
        flow control: a slow reader lags, it is not dropped."""
        if self.closed or cursor <= self.last_cursor:
            return []
        if self.fetching:
            if len(self.held) < MAX_HELD_LIVE:
                self.held.append((cursor, prev, text))
            else:
                self.held.clear()
                self.refetch = True
            return []
        if not has_room:
            self.fetching = True
            return [FetchInbox(format_cursor(self.last_cursor))]
        if prev <= self.last_cursor:
            self.last_cursor = cursor
            return [Send(text)]
        # Something between our last cursor and this entry has not reached us yet.
        self.fetching = True
        self.held.append((cursor, prev, text))
        return [FetchInbox(format_cursor(self.last_cursor))]

    def inbox_page(self, entries: list[tuple[Cursor, str]], complete: bool) -> list[Effect]:
        """Entries read from the inbox after the last cursor, oldest first."""
        effects: list[Effect] = []
        for cursor, text in entries:
            if cursor > self.last_cursor:
                self.last_cursor = cursor
                effects.append(Send(text))
        if not complete or self.refetch:
            self.refetch = False
            effects.append(FetchInbox(format_cursor(self.last_cursor)))
            return effects
        self.fetching = False
        held, self.held = sorted(self.held), []
        for cursor, prev, text in held:
            effects += self.deliver(cursor, prev, text)
        return effects

    def resync(self, reason: str, cursor: Cursor) -> list[Effect]:
        """The start cursor is older than the inbox keeps: continue from ``cursor``."""
        self.last_cursor = max(self.last_cursor, cursor)
        return [Send(frames.resync(reason, format_cursor(self.last_cursor)))]
