"""The ingest script against a real Valkey: order, idempotency, re-seeding."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from chat_shared.errors import Invalid, TooLarge
from chat_shared.ids import is_id
from chat_shared.ingest import Ingest, message_from_entry
from chat_shared.keys import shard_seq, shard_stream


class FixedSeq:
    def __init__(self, value: int = 0) -> None:
        self.value = value
        self.calls = 0

    async def last_seq(self, conversation_id: str) -> int:
        self.calls += 1
        return self.value


async def test_concurrent_sends_get_gapless_seq_in_stream_order(redis: Redis) -> None:
    ingest = Ingest(redis, shards=4)
    results = await asyncio.gather(
        *(ingest.ingest("c1", f"u{i % 5}", f"k{i}", f"hello {i}", FixedSeq()) for i in range(300))
    )
    assert sorted(m.seq for m in results) == list(range(1, 301))
    assert all(is_id(m.id) for m in results)
    entries = await redis.xrange(shard_stream(ingest.shard_for("c1")))
    assert [message_from_entry(f).seq for _, f in entries] == list(range(1, 301))


async def test_retry_with_same_client_id_returns_the_original(redis: Redis) -> None:
    ingest = Ingest(redis, shards=4)
    first = await ingest.ingest("c1", "u1", "same", "hi", FixedSeq())
    again = await ingest.ingest("c1", "u1", "same", "a different body", FixedSeq())
    assert again.duplicate
    assert not first.duplicate
    assert (again.id, again.seq, again.created_at_ms) == (first.id, first.seq, first.created_at_ms)
    assert await redis.xlen(shard_stream(ingest.shard_for("c1"))) == 1
    other_sender = await ingest.ingest("c1", "u2", "same", "hi", FixedSeq())
    assert other_sender.seq == 2


async def test_missing_counter_is_reseeded_from_store_and_stream(redis: Redis) -> None:
    ingest = Ingest(redis, shards=4)
    for i in range(3):
        await ingest.ingest("c1", "u1", f"k{i}", "x", FixedSeq())
    await redis.delete(shard_seq(ingest.shard_for("c1"), "c1"))
    # The store knows less than the stream: the stream's 3 wins.
    message = await ingest.ingest("c1", "u1", "k9", "x", FixedSeq(value=1))
    assert message.seq == 4
    await redis.delete(shard_seq(ingest.shard_for("c1"), "c1"))
    await redis.delete(shard_stream(ingest.shard_for("c1")))
    source = FixedSeq(value=40)
    message = await ingest.ingest("c1", "u1", "k10", "x", source)
    assert message.seq == 41
    assert source.calls == 1


@pytest.mark.parametrize(
    ("body", "client_id", "error"),
    [
        ("", "k", Invalid),
        ("   \n\t", "k", Invalid),
        ("x" * 101, "k", TooLarge),
        ("ok", "", Invalid),
        ("ok", "k" * 65, Invalid),
        ("ok", "bad id", Invalid),
        (123, "k", Invalid),
    ],
)
async def test_invalid_messages_are_refused(
    redis: Redis, body: object, client_id: str, error: type[Exception]
) -> None:
    ingest = Ingest(redis, shards=4, max_chars=100)
    with pytest.raises(error):
        await ingest.ingest("c1", "u1", client_id, body, FixedSeq())  # type: ignore[arg-type]
    assert await redis.exists(shard_stream(ingest.shard_for("c1"))) == 0


async def test_body_is_stored_verbatim(redis: Redis) -> None:
    ingest = Ingest(redis, shards=2)
    body = "<script>alert(1)</script> ' OR 1=1 -- \u202e emoji \U0001f600 \x00 end"
    message = await ingest.ingest("c1", "u1", "k", body, FixedSeq())
    entries = await redis.xrange(shard_stream(ingest.shard_for("c1")))
    assert message_from_entry(entries[0][1]).body == body == message.body


async def test_groups_exist_before_first_message(redis: Redis) -> None:
    ingest = Ingest(redis, shards=2)
    await ingest.ensure_groups()
    await ingest.ensure_groups()  # idempotent
    groups = await redis.xinfo_groups(shard_stream(0))
    assert {g["name"] for g in groups} == {b"history", b"fanout"}


class LoadsMembers:
    def __init__(self, redis: Redis, shards: int, members: set[str] | None) -> None:
        self.redis, self.shards, self.members, self.calls = redis, shards, members, 0

    async def load_members(self, conversation_id: str) -> None:
        from chat_shared.errors import NotFound
        from chat_shared.keys import MEMBERS_SENTINEL, members_key

        self.calls += 1
        if self.members is None:
            raise NotFound("No such conversation.")
        await self.redis.sadd(
            members_key(conversation_id, self.shards), MEMBERS_SENTINEL, *self.members
        )


async def test_membership_is_checked_in_the_script(redis: Redis) -> None:
    from chat_shared.errors import NotFound

    ingest = Ingest(redis, shards=4)
    loader = LoadsMembers(redis, 4, {"u1", "u2"})
    message = await ingest.ingest("c1", "u1", "k1", "hi", FixedSeq(), members=loader)
    assert message.seq == 1 and loader.calls == 1, "a cache miss loads the members once"
    await ingest.ingest("c1", "u2", "k1", "hi", FixedSeq(), members=loader)
    assert loader.calls == 1, "a cached set needs no load"
    with pytest.raises(NotFound):
        await ingest.ingest("c1", "intruder", "k2", "hi", FixedSeq(), members=loader)
    assert await redis.xlen(shard_stream(ingest.shard_for("c1"))) == 2


async def test_unknown_conversation_is_not_found(redis: Redis) -> None:
    from chat_shared.errors import NotFound

    ingest = Ingest(redis, shards=4)
    with pytest.raises(NotFound):
        await ingest.ingest(
            "nope", "u1", "k1", "hi", FixedSeq(), members=LoadsMembers(redis, 4, None)
        )
