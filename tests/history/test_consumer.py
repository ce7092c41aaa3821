"""The persistence consumer and the read-marker consumer against a real Valkey and a
real SQLite file: batches, replays, claims, dead letters, lag."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from chat_history.consumer import HistoryConsumer
from chat_history.metrics import HistoryMetrics
from chat_history.read_markers import READS_GROUP, ReadMarkerConsumer
from chat_history.runtime import HistoryRuntime
from chat_history.settings import HistorySettings
from chat_shared.ingest import IngestedMessage
from chat_shared.keys import (
    DEAD_LETTER_STREAM,
    HISTORY_GROUP,
    READ_MARKERS_STREAM,
    shard_stream,
)
from chat_shared.streams import Entry, GroupWorker
from tests.history.conftest import StartHistory, Users
from tests.history.helpers import Api
from tests.support.tokens import TokenMinter
from tests.support.waiting import eventually, running


async def read_new(worker: GroupWorker) -> list[Entry]:
    """What a reader of each stream takes in one round (new entries only)."""
    return [entry for stream in worker.streams for entry in await worker.read(stream, ">")]


async def pending(redis: Redis, shards: int, group: str = HISTORY_GROUP) -> int:
    total = 0
    for shard in range(shards):
        total += int((await redis.xpending(shard_stream(shard), group))["pending"])
    return total


async def new_group(runtime: HistoryRuntime, users: Users) -> str:
    view = await runtime.conversations.create_group(
        users.alice, "team", [users.bob], bearer_token="t"
    )
    return view.conversation.id


async def post(
    runtime: HistoryRuntime, user: str, conversation_id: str, n: int
) -> list[IngestedMessage]:
    return [
        await runtime.messages.post(user, conversation_id, body=f"m{i}", client_id=f"k{i}")
        for i in range(1, n + 1)
    ]


def consumer_for(
    runtime: HistoryRuntime, settings: HistorySettings, name: str = "c1"
) -> HistoryConsumer:
    return HistoryConsumer(
        runtime.redis,
        runtime.store,
        settings,
        runtime.metrics,
        fence=runtime.seq_fence,
        consumer_name=name,
    )


async def test_consumer_stores_batches_and_acknowledges_them(
    runtime: HistoryRuntime, settings: HistorySettings, users: Users, redis: Redis
) -> None:
    conversation = await new_group(runtime, users)
    sent = await post(runtime, users.alice, conversation, 30)
    async with running(consumer_for(runtime, settings).run()):
        await eventually(lambda: _stored(runtime, conversation, 30), "30 stored messages")
        await eventually(lambda: _none_pending(redis, settings), "acknowledgements")
    rows = await runtime.store.messages_between(conversation, 1, 100)
    assert rows == [IngestedMessage(**{**_fields(m), "duplicate": False}) for m in sent]
    assert _sample(runtime.metrics, "chat_history_messages_persisted_total") == 30


async def test_replayed_entries_are_not_stored_twice(
    runtime: HistoryRuntime, settings: HistorySettings, users: Users
) -> None:
    conversation = await new_group(runtime, users)
    await post(runtime, users.alice, conversation, 10)
    consumer = consumer_for(runtime, settings)
    await consumer.worker.ensure_groups()
    entries = await read_new(consumer.worker)
    assert len(entries) == 10
    await consumer.handle(entries)
    await consumer.handle(entries)  # as after a crash between the write and the XACK
    rows = await runtime.store.messages_between(conversation, 1, 100)
    assert [m.seq for m in rows] == list(range(1, 11))


async def test_entries_of_a_dead_consumer_are_claimed(
    runtime: HistoryRuntime, make_settings: Any, users: Users, redis: Redis
) -> None:
    settings = make_settings(claim_idle_ms=50, claim_interval_seconds=0.05)
    conversation = await new_group(runtime, users)
    await post(runtime, users.alice, conversation, 12)
    dead = consumer_for(runtime, settings, name="dead")
    await dead.worker.ensure_groups()
    assert len(await read_new(dead.worker)) == 12  # taken, never acknowledged
    async with running(consumer_for(runtime, settings, name="survivor").run()):
        await eventually(lambda: _stored(runtime, conversation, 12), "claimed entries stored")
        await eventually(lambda: _none_pending(redis, settings), "acknowledgements")


async def test_poison_entry_goes_to_the_dead_letter_stream(
    runtime: HistoryRuntime, make_settings: Any, users: Users, redis: Redis
) -> None:
    settings = make_settings(claim_idle_ms=1, claim_interval_seconds=0.02, dead_letter_after=2)
    conversation = await new_group(runtime, users)
    poison_id = await redis.xadd(shard_stream(0), {"c": conversation, "q": "not a number"})
    await post(runtime, users.alice, conversation, 3)
    async with running(consumer_for(runtime, settings).run()):
        await eventually(lambda: _has_entries(redis, DEAD_LETTER_STREAM), "a dead letter")
        await eventually(lambda: _none_pending(redis, settings), "the poison entry acked")
        await eventually(lambda: _stored(runtime, conversation, 3), "the good messages")
    [(_, record)] = await redis.xrange(DEAD_LETTER_STREAM)
    assert record[b"_id"] == poison_id
    assert record[b"_stream"] == shard_stream(0).encode()
    assert int(record[b"_deliveries"]) == 2
    assert b"KeyError" in record[b"_error"] or b"ValueError" in record[b"_error"]
    assert record[b"f:q"] == b"not a number"
    assert _sample(runtime.metrics, "chat_history_dead_letters_total") == 1


async def test_a_message_reusing_a_stored_seq_is_dead_lettered_not_lost(
    runtime: HistoryRuntime, settings: HistorySettings, users: Users, redis: Redis
) -> None:
    # Two messages handed one seq (a fencing failure upstream): the stored one stays,
    # the newcomer is parked where an operator sees it, and the conflict is counted.
    conversation = await new_group(runtime, users)
    sent = await post(runtime, users.alice, conversation, 3)
    [(_, original)] = await redis.xrange(
        shard_stream(runtime.ingest.shard_for(conversation)), count=1
    )
    impostor = {**original, b"id": b"Mimpostor", b"b": b"another message, same seq"}
    async with running(consumer_for(runtime, settings).run()):
        await eventually(lambda: _stored(runtime, conversation, 3), "the messages")
        await redis.xadd(shard_stream(runtime.ingest.shard_for(conversation)), impostor)
        await eventually(lambda: _has_entries(redis, DEAD_LETTER_STREAM), "a dead letter")
        await eventually(lambda: _none_pending(redis, settings), "the impostor acked")
    stored = await runtime.store.messages_between(conversation, 1, 3)
    assert [m.id for m in stored] == [m.id for m in sent]
    [(_, record)] = await redis.xrange(DEAD_LETTER_STREAM)
    assert b"seq conflict" in record[b"_error"] and sent[0].id.encode() in record[b"_error"]
    assert record[b"f:id"] == b"Mimpostor"
    assert _sample(runtime.metrics, "chat_history_seq_conflicts_total") == 1
    assert _sample(runtime.metrics, "chat_history_dead_letters_total") == 1


@pytest.mark.parametrize("redis_topology", ["single", "cluster"])
async def test_read_markers_from_the_gateway_stream(
    runtime: HistoryRuntime, settings: HistorySettings, users: Users, redis: Redis
) -> None:
    conversation = await new_group(runtime, users)
    await post(runtime, users.alice, conversation, 3)
    for user, seq in [
        (users.bob, "2"),
        (users.bob, "1"),
        (users.stranger, "3"),
        (users.carol, "1"),
        (users.bob, "99"),
    ]:
        await redis.xadd(READ_MARKERS_STREAM, {"u": user, "c": conversation, "q": seq})
    await redis.xadd(READ_MARKERS_STREAM, {"u": users.bob, "c": conversation, "q": "x"})
    await redis.xadd(READ_MARKERS_STREAM, {"garbage": "1"})
    consumer = ReadMarkerConsumer(runtime, runtime.metrics, consumer_name="reads-1")

    async def all_read() -> bool:
        [info] = [
            g
            for g in await redis.xinfo_groups(READ_MARKERS_STREAM)
            if g["name"] == READS_GROUP.encode()
        ]
        return bool(info["pending"] == 0 and info["lag"] == 0)

    async with running(consumer.run()):
        await eventually(all_read, "every read marker handled")
        assert await runtime.store.read_seq(users.bob, conversation) == 2
        assert await runtime.store.read_seq(users.stranger, conversation) == 0
        assert await runtime.store.read_seq(users.carol, conversation) == 0
        await redis.xadd(READ_MARKERS_STREAM, {"u": users.bob, "c": conversation, "q": "3"})
        await eventually(
            lambda: _read_seq_is(runtime, users.bob, conversation, 3), "the later marker"
        )


async def test_lag_is_exported_and_readiness_degrades(
    start_history: StartHistory, minter: TokenMinter, users: Users
) -> None:
    running_app = start_history(consumer_enabled=False, lag_degraded_threshold=3)
    api = Api(running_app.url, minter)
    try:
        ready = (await api.http.get("/readyz")).json()
        assert ready["status"] == "ok", ready
        group = await api.group(users.alice, [users.bob])
        for n in range(5):
            assert (await api.send(users.alice, group["id"], "x", f"k{n}")).status_code == 201
        response = await api.http.get("/readyz")
        assert response.status_code == 200
        assert response.json()["status"] == "degraded"
        assert response.json()["checks"]["history_lag"] == "degraded"
        metrics = (await api.http.get("/metrics")).text
        assert 'chat_history_stream_lag{group="history"} 5.0' in metrics
        assert 'chat_history_stream_lag{group="fanout"} 5.0' in metrics
    finally:
        await api.close()


async def _stored(runtime: HistoryRuntime, conversation: str, seq: int) -> bool:
    return await runtime.store.last_seq(conversation) >= seq


async def _none_pending(redis: Redis, settings: HistorySettings) -> bool:
    return await pending(redis, settings.ingest_shards) == 0


async def _has_entries(redis: Redis, stream: str) -> bool:
    return bool(await redis.xlen(stream))


async def _read_seq_is(runtime: HistoryRuntime, user: str, conversation: str, seq: int) -> bool:
    return await runtime.store.read_seq(user, conversation) == seq


def _fields(message: IngestedMessage) -> dict[str, Any]:
    return {
        name: getattr(message, name)
        for name in (
            "id",
            "conversation_id",
            "seq",
            "sender_id",
            "body",
            "client_id",
            "created_at_ms",
        )
    }


def _sample(metrics: HistoryMetrics, name: str) -> float:
    value = metrics.base.registry.get_sample_value(name)
    return float(value or 0)


async def test_names_of_long_gone_consumers_are_forgotten(
    runtime: HistoryRuntime, settings: HistorySettings, users: Users, redis: Redis
) -> None:
    conversation = await new_group(runtime, users)
    await post(runtime, users.alice, conversation, 2)
    gone, holding, me = (consumer_for(runtime, settings, name) for name in ("gone", "hold", "me"))
    await gone.worker.ensure_groups()
    await gone.handle(await read_new(gone.worker))  # read and acknowledged: holds nothing
    await post(runtime, users.alice, conversation, 4)
    assert await read_new(holding.worker), "this one keeps entries pending"
    assert await me.worker.forget_idle_consumers(idle_ms=-1) >= settings.ingest_shards
    names: dict[str, set[bytes]] = {}
    for shard in range(settings.ingest_shards):
        consumers = await redis.xinfo_consumers(shard_stream(shard), HISTORY_GROUP)
        names[shard_stream(shard)] = {c["name"] for c in consumers}
    assert all(b"gone" not in found for found in names.values())
    busy = shard_stream(runtime.ingest.shard_for(conversation))
    assert b"hold" in names[busy], "a consumer holding entries is kept"
