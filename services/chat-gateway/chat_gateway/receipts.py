"""Read receipts and typing indicators from WebSocket frames.

Both check membership against the Redis cache. A read marker goes to history through
a stream (history stores it, forward only) and, as a ``receipt`` frame, to the other
members and to the reader's other devices. Typing goes to the other members' sessions
only and is never stored.
"""

from __future__ import annotations

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
)

READ_STREAM_MAXLEN = 1_000_000


class Receipts:
    def __init__(self, redis: Redis, events: EventRouter, *, shards: int) -> None:
        self.redis = redis
        self.events = events
        self.shards = shards

    async def _members(self, conversation_id: str, user_id: str) -> list[str]:
        members = await self.redis.smembers(members_key(conversation_id, self.shards))
        if not members:
            raise Unavailable("Membership is being restored; retry shortly.")
        names = {m.decode() for m in members}
        names.discard(MEMBERS_SENTINEL)
        if user_id not in names:
            raise NotFound("No such conversation.")
        return sorted(names)

    async def mark_read(self, user_id: str, conversation_id: str, seq: int) -> None:
        members = await self._members(conversation_id, user_id)
        shard = ingest_shard_for(conversation_id, self.shards)
        last = await self.redis.get(shard_seq(shard, conversation_id))
        if last is None or seq > int(last):
            raise Invalid("seq is beyond the last message of the conversation")
        await self.redis.xadd(
            READ_MARKERS_STREAM,
            {"u": user_id, "c": conversation_id, "q": seq},
            maxlen=READ_STREAM_MAXLEN,
            approximate=True,
        )
        await self.events.send(members, frames.receipt(conversation_id, user_id, seq))

    async def typing(self, user_id: str, conversation_id: str, active: bool) -> None:
        members = await self._members(conversation_id, user_id)
        others = [m for m in members if m != user_id]
        await self.events.send(others, frames.typing(conversation_id, user_id, active))
