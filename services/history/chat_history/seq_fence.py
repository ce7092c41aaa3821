"""Keeping the ingest from reusing a seq after Redis loses writes.

The ingest takes a conversation's next seq from a counter in Redis. If Redis goes back
in time (a failover to a replica that had not caught up, a restore of an older file),
the counter can fall below seqs that history has already stored, and the next sends
would get taken seqs. Two things prevent that:

- The floor. After each write, history sets the conversation's floor key (same slot as
  the counter) to the highest seq it stored, and the ingest script never hands out a
  seq at or below the floor. A counter that went back alone is harmless.
- The mark. A failover takes the floors back with the counters, so every floor write
  also increments the shard's mark, and each history process remembers the highest
  mark it was given. A mark found lower than that (or gone) means Redis went back in
  time: the process writes the floors it remembers again at once. Each process
  remembers the conversations it stored recently (bounded), so together they cover
  the conversations that were active before the loss.

What remains is a short window after a failover, until the next check, in which a send
can still get a taken seq; history then refuses it as a seq conflict (dead-lettered and
counted, never written over the stored message). ``CHAT_REDIS_MIN_REPLICAS`` narrows it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable

from redis.asyncio import Redis

from chat_shared.ingest import IngestedMessage
from chat_shared.keys import ingest_shard_for, shard_fence_mark, shard_seq_floor
from chat_shared.scripts import LuaScript, run_batch

log = logging.getLogger(__name__)

# Conversations a process remembers the stored seq of, most recent first out last.
REMEMBERED_CONVERSATIONS = 100_000

# KEYS[1]: the conversation's floor, KEYS[2]: its shard's mark.  ARGV[1]: a stored seq.
# Raises the floor (never lowers it) and returns the mark after counting this write.
FENCE_LUA = """
local floor = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > floor then redis.call('SET', KEYS[1], ARGV[1]) end
return redis.call('INCR', KEYS[2])
"""


class SeqFence:
    def __init__(self, redis: Redis, shards: int) -> None:
        self.redis = redis
        self.shards = shards
        self._fence = LuaScript(redis, FENCE_LUA)
        self._stored: OrderedDict[str, int] = OrderedDict()
        self._marks: dict[int, int] = {}

    async def stored(self, messages: Iterable[IngestedMessage]) -> None:
        """Write the floors of a batch that is now in the store."""
        highest: dict[str, int] = {}
        for m in messages:
            highest[m.conversation_id] = max(highest.get(m.conversation_id, 0), m.seq)
        for conversation_id, seq in highest.items():
            self._remember(conversation_id, seq)
        await self._write(highest)

    async def check(self) -> int:
        """Compare every shard's mark with the highest this process was given; where
        Redis went back, write this process's floors of that shard again. Returns the
        shards found rolled back."""
        shards = sorted(self._marks)
        if not shards:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.get(shard_fence_mark(shard))
            current = await pipe.execute()
        behind = [
            shard
            for shard, value in zip(shards, current, strict=True)
            if value is None or int(value) < self._marks[shard]
        ]
        if behind:
            log.warning(
                "redis went back in time; writing seq floors again", extra={"shards": behind}
            )
            for shard in behind:
                self._marks.pop(shard, None)
            await self._write(
                {
                    cid: seq
                    for cid, seq in self._stored.items()
                    if ingest_shard_for(cid, self.shards) in behind
                }
            )
        return len(behind)

    def _remember(self, conversation_id: str, seq: int) -> None:
        self._stored[conversation_id] = max(seq, self._stored.pop(conversation_id, 0))
        while len(self._stored) > REMEMBERED_CONVERSATIONS:
            self._stored.popitem(last=False)

    async def _write(self, floors: dict[str, int]) -> None:
        items = list(floors.items())
        shards = [ingest_shard_for(cid, self.shards) for cid, _ in items]
        marks = await run_batch(
            self.redis,
            [
                (self._fence, [shard_seq_floor(shard, cid), shard_fence_mark(shard)], [seq])
                for (cid, seq), shard in zip(items, shards, strict=True)
            ],
        )
        for shard, mark in zip(shards, marks, strict=True):
            self._marks[shard] = max(self._marks.get(shard, 0), int(mark))
