"""Messages: posting through the ingest and reading pages without gaps.

A conversation's messages are the store's plus the ones the ingest acknowledged that
the consumer has not stored yet (still in the shard stream). Every read merges both,
so a client never sees a hole between what it got live and what history returns. The
newest seq is the larger of the Redis counter and the store's highest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from chat_history.membership import Membership
from chat_history.settings import MAX_PAGE_LIMIT
from chat_history.tail import UnpersistedTail
from chat_shared.errors import Invalid
from chat_shared.ingest import Ingest, IngestedMessage
from chat_shared.keys import ingest_shard_for, shard_seq
from chat_shared.ports.history import HistoryStore

log = logging.getLogger(__name__)

DEFAULT_PAGE_LIMIT = 50


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a conversation stands: its newest seq and the newest one stored."""

    last_seq: int
    stored_seq: int


@dataclass(frozen=True, slots=True)
class MessagePage:
    messages: list[IngestedMessage]
    has_more: bool


class Timeline:
    def __init__(
        self, store: HistoryStore, redis: Redis, tail: UnpersistedTail, shards: int
    ) -> None:
        self.store = store
        self.redis = redis
        self.tail = tail
        self.shards = shards

    async def progress(self, conversation_ids: Sequence[str]) -> dict[str, Progress]:
        if not conversation_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in conversation_ids:
                pipe.get(shard_seq(ingest_shard_for(cid, self.shards), cid))
            counters = await pipe.execute()
        stored = await self.store.last_seqs(conversation_ids)
        out: dict[str, Progress] = {}
        for cid, counter in zip(conversation_ids, counters, strict=True):
            kept = stored.get(cid, 0)
            out[cid] = Progress(max(int(counter or 0), kept), kept)
        return out

    async def last_seq(self, conversation_id: str) -> int:
        return (await self.progress([conversation_id]))[conversation_id].last_seq

    async def window(
        self, conversation_id: str, low: int, high: int, stored_seq: int
    ) -> dict[int, IngestedMessage]:
        """Every message with ``low <= seq <= high``, stored or not yet."""
        found = {m.seq: m for m in await self.store.messages_between(conversation_id, low, high)}
        if len(found) == high - low + 1 or high <= stored_seq:
            return found
        tail = await self.tail.read(conversation_id, above=max(low - 1, stored_seq), up_to=high)
        found.update(tail)
        missing = [seq for seq in range(max(low, stored_seq + 1), high + 1) if seq not in found]
        if missing:
            # Stored (and trimmed from the stream) between our two reads: read again.
            again = await self.store.messages_between(conversation_id, missing[0], missing[-1])
            found.update({m.seq: m for m in again})
        return found

    async def latest(self, progress: dict[str, Progress]) -> dict[str, IngestedMessage]:
        """The newest message of each conversation (if it has one)."""
        stored = {
            cid: p.last_seq
            for cid, p in progress.items()
            if p.last_seq and p.last_seq <= p.stored_seq
        }
        out = await self.store.messages_at(stored)
        for cid, p in progress.items():
            if p.last_seq > p.stored_seq:
                window = await self.window(cid, p.last_seq, p.last_seq, p.stored_seq)
                if p.last_seq in window:
                    out[cid] = window[p.last_seq]
        return out

    async def page(
        self,
        conversation_id: str,
        *,
        before_seq: int | None,
        after_seq: int | None,
        limit: int,
    ) -> MessagePage:
        progress = (await self.progress([conversation_id]))[conversation_id]
        last = progress.last_seq
        if after_seq is not None:
            low, high = after_seq + 1, min(after_seq + limit, last)
            newest_first, has_more = False, high < last
        else:
            high = last if before_seq is None else min(before_seq - 1, last)
            low = max(1, high - limit + 1)
            newest_first, has_more = True, low > 1
        if high < low:
            return MessagePage([], has_more=False)
        found = await self.window(conversation_id, low, high, progress.stored_seq)
        ordered = sorted(found.values(), key=lambda m: m.seq, reverse=newest_first)
        return MessagePage(ordered, has_more=has_more)


class Messages:
    def __init__(
        self, store: HistoryStore, ingest: Ingest, membership: Membership, timeline: Timeline
    ) -> None:
        self.store = store
        self.ingest = ingest
        self.membership = membership
        self.timeline = timeline

    async def post(
        self, user_id: str, conversation_id: str, *, body: str, client_id: str
    ) -> IngestedMessage:
        """Same path as a WebSocket send: membership is checked inside the ingest
        script, and a retried ``client_id`` answers the original message."""
        message = await self.ingest.ingest(
            conversation_id, user_id, client_id, body, self.store, members=self.membership
        )
        # The sender has read their own message. The message is already acknowledged:
        # a failure here must not turn the answer into an error (the consumer moves
        # the marker again when it stores the message).
        try:
            await self.store.advance_read(user_id, conversation_id, message.seq)
        except Exception as exc:
            log.warning(
                "could not advance the sender's read marker", extra={"error": type(exc).__name__}
            )
        return message

    async def page(
        self,
        user_id: str,
        conversation_id: str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = DEFAULT_PAGE_LIMIT,
    ) -> MessagePage:
        if before_seq is not None and after_seq is not None:
            raise Invalid("Give before_seq or after_seq, not both.")
        if not 1 <= limit <= MAX_PAGE_LIMIT:
            raise Invalid(f"limit must be between 1 and {MAX_PAGE_LIMIT}.")
        if before_seq is not None and before_seq < 1:
            raise Invalid("before_seq must be at least 1.")
        if after_seq is not None and after_seq < 0:
            raise Invalid("after_seq must not be negative.")
        await self.membership.require_member(conversation_id, user_id)
        return await self.timeline.page(
            conversation_id, before_seq=before_seq, after_seq=after_seq, limit=limit
        )
