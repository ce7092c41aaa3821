"""Read receipts and typing indicators from WebSocket frames.

Both check membership against the Redis cache. A read marker goes to history through
a stream (history stores it, forward only) and, as a ``receipt`` frame, to the other
members and to the reader's other devices. Typing goes to the other members' sessions
only and is never stored.

A read marker only moves forward, so a ``read`` at or below the user's marker changes
nothing and must cost nothing beyond its check: the user's markers are kept in Redis
(in the user's slot) and a read that does not raise one sends no stream entry and no
receipt. Reads are also limited per user over every socket (``CHAT_READ_RATE``).

Receipt frames are coalesced: a reader who moves their marker several times within
``CHAT_RECEIPT_TICK_SECONDS`` (scrolling through a conversation) sends the members one
receipt, for the newest seq. The marker itself goes to history at once.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

from chat_gateway import frames
from chat_gateway.delivery import EventRouter
from chat_shared.errors import Invalid, NotFound, Unavailable
from chat_shared.keys import (
    MEMBERS_SENTINEL,
    READ_MARKERS_STREAM,
    ingest_shard_for,
    members_key,
    shard_seq,
    user_read_markers,
)
from chat_shared.limits import RateLimiter, Rule, user_subject
from chat_shared.scripts import LuaScript

log = logging.getLogger(__name__)

READ_STREAM_MAXLEN = 1_000_000
# Markers of conversations not read for this long are dropped from the hash; a later
# read of one just raises it again (history still refuses to move a marker back).
READ_MARKERS_TTL_SECONDS = 30 * 24 * 3600

# KEYS[1]: the user's markers hash.  ARGV[1]: conversation, ARGV[2]: seq, ARGV[3]: ttl.
# 1 when the marker moved forward (and was stored), 0 when it was already there or past.
RAISE_MARKER_LUA = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) <= current then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


class Receipts:
    def __init__(
        self,
        redis: Redis,
        events: EventRouter,
        *,
        shards: int,
        limiter: RateLimiter | None = None,
        read_rule: Rule | None = None,
        tick_seconds: float = 0.1,
    ) -> None:
        self.redis = redis
        self.events = events
        self.shards = shards
        self.limiter = limiter
        self.read_rule = read_rule
        self.tick_seconds = tick_seconds
        self._raise_marker = LuaScript(redis, RAISE_MARKER_LUA)
        # (conversation, reader) -> (newest seq, members), sent at the end of the tick.
        self._pending: dict[tuple[str, str], tuple[int, list[str]]] = {}
        self._flush: asyncio.TimerHandle | None = None

    async def _members(self, conversation_id: str, user_id: str) -> list[str]:
        members = await self.redis.smembers(members_key(conversation_id, self.shards))
        if not members:
            raise Unavailable("Membership is being restored; retry shortly.")
        names = {m.decode() for m in members}
        names.discard(MEMBERS_SENTINEL)
        if user_id not in names:
            raise NotFound("No such conversation.")
        return sorted(names)

    async def mark_read(self, user_id: str, conversation_id: str, seq: int) -> bool:
        """Raise the user's read marker; ``False`` when it was there already (nothing
        is sent then)."""
        if self.limiter is not None and self.read_rule is not None:
            await self.limiter.check(user_subject(user_id), self.read_rule)
        members = await self._members(conversation_id, user_id)
        shard = ingest_shard_for(conversation_id, self.shards)
        last = await self.redis.get(shard_seq(shard, conversation_id))
        if last is None or seq > int(last):
            raise Invalid("seq is beyond the last message of the conversation")
        moved = await self._raise_marker(
            keys=[user_read_markers(user_id)],
            args=[conversation_id, seq, READ_MARKERS_TTL_SECONDS],
        )
        if not moved:
            return False
        try:
            await self.redis.xadd(
                READ_MARKERS_STREAM,
                {"u": user_id, "c": conversation_id, "q": seq},
                maxlen=READ_STREAM_MAXLEN,
                approximate=True,
            )
        except BaseException:
            # Not streamed, so history never hears of it: forget the raise, so that the
            # client's retry of this read is not taken for a repeat.
            await self.redis.hdel(user_read_markers(user_id), conversation_id)
            raise
        self._queue_receipt(conversation_id, user_id, seq, members)
        return True

    def _queue_receipt(
        self, conversation_id: str, user_id: str, seq: int, members: list[str]
    ) -> None:
        key = (conversation_id, user_id)
        queued = self._pending.get(key)
        if queued is None or seq > queued[0]:
            self._pending[key] = (seq, members)
        if self._flush is None:
            loop = asyncio.get_running_loop()
            self._flush = loop.call_later(self.tick_seconds, self._start_flush)

    def _start_flush(self) -> None:
        self._flush = None
        pending, self._pending = self._pending, {}
        task = asyncio.ensure_future(self._send_receipts(pending))
        task.add_done_callback(_log_failure)

    async def _send_receipts(self, pending: dict[tuple[str, str], tuple[int, list[str]]]) -> None:
        for (conversation_id, user_id), (seq, members) in pending.items():
            await self.events.send(members, frames.receipt(conversation_id, user_id, seq))

    async def typing(self, user_id: str, conversation_id: str, active: bool) -> None:
        members = await self._members(conversation_id, user_id)
        others = [m for m in members if m != user_id]
        await self.events.send(others, frames.typing(conversation_id, user_id, active))


def _log_failure(task: asyncio.Future[None]) -> None:
    # Receipts are advisory (the marker is stored already): a failed send is logged.
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("receipts not sent", extra={"error": type(exc).__name__})
