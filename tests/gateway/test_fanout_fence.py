"""Two fan-out holders of one shard at once (a stalled holder that has not yet seen
that its lease expired, or two holders after a failover lost the lease key) cannot
duplicate or reorder an inbox: each member's append script checks the shard entry id
against the watermark it keeps, a fencing token that only moves forward.

On one Valkey and on a Valkey Cluster (the inbox, the shard stream and the lease live
in different slots)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from chat_gateway.fanout import Fanout
from chat_gateway.inbox import Inbox
from chat_shared.keys import (
    FANOUT_GROUP,
    MEMBERS_SENTINEL,
    ingest_shard_for,
    members_key,
    shard_stream,
    user_inbox,
)

SHARDS = 4
CONVERSATION = "01JCONVERSATION00000000000"
MEMBERS = ["01JUSERA000000000000000000", "01JUSERB000000000000000000"]


@pytest.fixture(params=["single", "cluster"])
def redis_topology(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def holder(redis: Redis, name: str) -> Fanout:
    return Fanout(redis, Inbox(redis, maxlen=1000), gateway_id=name, shards=SHARDS, lease_seconds=5)


async def shard_entries(redis: Redis, count: int) -> tuple[int, str, list[Any]]:
    """``count`` messages of one conversation in its shard stream, read by the group."""
    shard = ingest_shard_for(CONVERSATION, SHARDS)
    stream = shard_stream(shard)
    await redis.sadd(members_key(CONVERSATION, SHARDS), MEMBERS_SENTINEL, *MEMBERS)
    await redis.xgroup_create(stream, FANOUT_GROUP, id="0", mkstream=True)
    for seq in range(1, count + 1):
        fields = {
            "id": f"01JMESSAGE{seq:016d}",
            "c": CONVERSATION,
            "q": seq,
            "s": MEMBERS[0],
            "b": f"body {seq}",
            "k": f"client-{seq}",
            "t": 1_700_000_000_000 + seq,
        }
        await redis.xadd(stream, fields)  # type: ignore[arg-type]
    read = await redis.xreadgroup(FANOUT_GROUP, f"s{shard}", {stream: ">"})
    return shard, stream, list(read[0][1])


async def inbox_seqs(redis: Redis, user: str) -> list[int]:
    return [orjson.loads(f[b"m"])["seq"] for _, f in await redis.xrange(user_inbox(user))]


async def test_a_stale_holder_replaying_an_older_batch_writes_nothing(redis: Redis) -> None:
    shard, stream, entries = await shard_entries(redis, 6)
    current, stale = holder(redis, "gw-new"), holder(redis, "gw-old")

    await current._fan_out(shard, stream, entries)  # the new holder did the whole run
    await stale._fan_out(shard, stream, entries[:4])  # the stalled one wakes up late

    for member in MEMBERS:
        assert await inbox_seqs(redis, member) == [1, 2, 3, 4, 5, 6]
    assert stale.stats.inbox_appends == 0
    assert current.stats.inbox_appends == 6 * len(MEMBERS)


async def test_overlapping_holders_interleave_into_one_ordered_copy(redis: Redis) -> None:
    shard, stream, entries = await shard_entries(redis, 9)
    first, second = holder(redis, "gw-a"), holder(redis, "gw-b")

    # Both work the same pending entries in overlapping batches, racing each other.
    await first._fan_out(shard, stream, entries[:3])
    await second._fan_out(shard, stream, entries[:6])
    await first._fan_out(shard, stream, entries[3:6])
    await first._fan_out(shard, stream, entries[6:])
    await second._fan_out(shard, stream, entries[6:])

    for member in MEMBERS:
        assert await inbox_seqs(redis, member) == list(range(1, 10))
