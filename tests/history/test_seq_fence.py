"""No seq is handed out twice when Redis goes back in time: the counter alone going
back (a restore of one key), and the whole of Redis going back (a failover to a
replica that had not caught up), while history holds the higher seqs."""

from __future__ import annotations

from redis.asyncio import Redis

from chat_history.runtime import HistoryRuntime
from chat_history.settings import HistorySettings
from chat_shared.keys import ingest_shard_for, shard_fence_mark, shard_seq, shard_seq_floor
from tests.history.conftest import Users
from tests.history.test_consumer import consumer_for, new_group, post, read_new


async def persist_ten(runtime: HistoryRuntime, settings: HistorySettings, users: Users) -> str:
    conversation = await new_group(runtime, users)
    await post(runtime, users.alice, conversation, 10)
    consumer = consumer_for(runtime, settings)
    await consumer.worker.ensure_groups()
    await consumer.handle(await read_new(consumer.worker))
    assert await runtime.store.last_seq(conversation) == 10
    return conversation


async def test_a_counter_that_went_back_never_reuses_a_stored_seq(
    runtime: HistoryRuntime, settings: HistorySettings, users: Users, redis: Redis
) -> None:
    conversation = await persist_ten(runtime, settings, users)
    shard = ingest_shard_for(conversation, settings.ingest_shards)
    await redis.set(shard_seq(shard, conversation), 5)  # as a lagging replica holds it

    sent = await post(runtime, users.bob, conversation, 2)
    assert [m.seq for m in sent] == [11, 12]


async def test_redis_going_back_whole_is_noticed_and_the_floors_written_again(
    runtime: HistoryRuntime, settings: HistorySettings, users: Users, redis: Redis
) -> None:
    conversation = await persist_ten(runtime, settings, users)
    shard = ingest_shard_for(conversation, settings.ingest_shards)
    # A replica promoted before it saw the last writes: counter, floor and mark all old.
    await redis.set(shard_seq(shard, conversation), 5)
    await redis.delete(shard_seq_floor(shard, conversation))
    await redis.set(shard_fence_mark(shard), 0)

    assert await runtime.seq_fence.check() == 1, "the mark went back: noticed"
    assert int(await redis.get(shard_seq_floor(shard, conversation))) == 10
    sent = await post(runtime, users.bob, conversation, 1)
    assert [m.seq for m in sent] == [11]
    assert await runtime.seq_fence.check() == 0, "nothing went back since"
