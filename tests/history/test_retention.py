"""Stream retention: trimming at the low watermark of every consumer group never drops
an entry some group has pending or has not read yet."""

from __future__ import annotations

from redis.asyncio import Redis

from chat_shared.ingest import Ingest
from chat_shared.keys import CONSUMER_GROUPS, FANOUT_GROUP, HISTORY_GROUP, shard_seq, shard_stream
from chat_shared.retention import StreamId, low_watermark, trim_shard_streams, trim_stream

STREAM = shard_stream(0)


async def ingest_messages(redis: Redis, count: int, start: int = 0) -> list[str]:
    ingest = Ingest(redis, shards=1)
    await redis.set(shard_seq(0, "c1"), 0, nx=True)
    for n in range(start, start + count):
        await ingest.ingest("c1", "u1", f"k{n}", f"body {n}", _NoStore())
    return [entry_id.decode() for entry_id, _ in await redis.xrange(STREAM)][-count:]


class _NoStore:
    async def last_seq(self, conversation_id: str) -> int:
        return 0


async def read(redis: Redis, group: str, count: int) -> list[str]:
    reply = await redis.xreadgroup(group, "c", {STREAM: ">"}, count=count)
    return [entry_id.decode() for entry_id, _ in reply[0][1]] if reply else []


async def remaining(redis: Redis) -> list[str]:
    return [entry_id.decode() for entry_id, _ in await redis.xrange(STREAM)]


async def test_nothing_is_trimmed_while_a_group_has_not_read(redis: Redis) -> None:
    await Ingest(redis, shards=1).ensure_groups()
    ids = await ingest_messages(redis, 10)
    assert await trim_stream(redis, STREAM, CONSUMER_GROUPS) == 0
    taken = await read(redis, HISTORY_GROUP, 10)
    await redis.xack(STREAM, HISTORY_GROUP, *taken)
    # History is done with everything; the fan-out has read nothing yet.
    assert await trim_stream(redis, STREAM, CONSUMER_GROUPS) == 0
    assert await remaining(redis) == ids


async def test_trim_stops_at_the_oldest_pending_entry(redis: Redis) -> None:
    await Ingest(redis, shards=1).ensure_groups()
    ids = await ingest_messages(redis, 10)
    history = await read(redis, HISTORY_GROUP, 10)
    await redis.xack(STREAM, HISTORY_GROUP, *history[:4], history[6])
    fanout = await read(redis, FANOUT_GROUP, 10)
    await redis.xack(STREAM, FANOUT_GROUP, *fanout)

    assert await low_watermark(redis, STREAM, CONSUMER_GROUPS) == StreamId.parse(ids[4])
    assert await trim_shard_streams(redis, 1) == 4
    assert await remaining(redis) == ids[4:]
    pending = await redis.xpending_range(STREAM, HISTORY_GROUP, "-", "+", 100)
    assert {p["message_id"].decode() for p in pending} <= set(await remaining(redis))


async def test_trim_keeps_entries_no_group_has_read(redis: Redis) -> None:
    await Ingest(redis, shards=1).ensure_groups()
    old = await ingest_messages(redis, 5)
    for group in CONSUMER_GROUPS:
        await redis.xack(STREAM, group, *await read(redis, group, 5))
    new = await ingest_messages(redis, 3, start=5)
    # History has read (not acknowledged) one of the new entries.
    await read(redis, HISTORY_GROUP, 1)
    assert await trim_stream(redis, STREAM, CONSUMER_GROUPS) == len(old)
    assert await remaining(redis) == new


async def test_a_missing_group_blocks_trimming(redis: Redis) -> None:
    await redis.xgroup_create(STREAM, HISTORY_GROUP, id="0", mkstream=True)
    await ingest_messages(redis, 3)
    await redis.xack(STREAM, HISTORY_GROUP, *await read(redis, HISTORY_GROUP, 3))
    assert await low_watermark(redis, STREAM, CONSUMER_GROUPS) is None
    assert await trim_stream(redis, STREAM, CONSUMER_GROUPS) == 0
    assert len(await remaining(redis)) == 3
    assert await trim_stream(redis, "chat:no-such-stream", CONSUMER_GROUPS) == 0


async def test_other_groups_on_the_stream_count_too(redis: Redis) -> None:
    await Ingest(redis, shards=1).ensure_groups()
    await redis.xgroup_create(STREAM, "audit", id="0")
    await ingest_messages(redis, 4)
    for group in CONSUMER_GROUPS:
        await redis.xack(STREAM, group, *await read(redis, group, 4))
    assert await trim_stream(redis, STREAM, CONSUMER_GROUPS) == 0
