"""Messages the ingest acknowledged that the store does not hold yet.

They are still in their shard stream, at or after the ``history`` group's low
watermark (everything older has been stored, or dead-lettered). The scan walks the
stream backwards from its newest entry: within one conversation, stream order is seq
order, so it stops at the first entry at or below the seq the caller already has.
"""

from __future__ import annotations

from redis.asyncio import Redis

from chat_shared.ingest import IngestedMessage, message_from_entry
from chat_shared.keys import HISTORY_GROUP, ingest_shard_for, shard_stream
from chat_shared.retention import group_watermarks

_SCAN_CHUNK = 500


class UnpersistedTail:
    def __init__(self, redis: Redis, shards: int, *, max_scan: int = 50_000) -> None:
        self.redis = redis
        self.shards = shards
        self.max_scan = max_scan

    async def read(
        self, conversation_id: str, *, above: int, up_to: int
    ) -> dict[int, IngestedMessage]:
        """Stream entries of the conversation with ``above < seq <= up_to``, by seq."""
        found: dict[int, IngestedMessage] = {}
        if up_to <= above:
            return found
        stream = shard_stream(ingest_shard_for(conversation_id, self.shards))
        floor = (await group_watermarks(self.redis, stream)).get(HISTORY_GROUP)
        low = str(floor) if floor is not None else "-"
        high = "+"
        wanted = conversation_id.encode()
        scanned = 0
        while scanned < self.max_scan:
            entries = await self.redis.xrevrange(stream, max=high, min=low, count=_SCAN_CHUNK)
            for _, fields in entries:
                if fields.get(b"c") != wanted:
                    continue
                try:
                    message = message_from_entry(fields)
                except (KeyError, ValueError):  # a malformed entry is nobody's message
                    continue
                if message.seq <= above:
                    return found
                if message.seq <= up_to:
                    found[message.seq] = message
            scanned += len(entries)
            if len(entries) < _SCAN_CHUNK:
                break
            last_id = entries[-1][0]
            high = "(" + (last_id.decode() if isinstance(last_id, bytes) else str(last_id))
        return found
