"""The membership cache in Redis: semantics, write-through, filling on a miss, and the
rebuild after Redis loses its data."""

from __future__ import annotations

import httpx2
from redis.asyncio import Redis

from chat_history.metrics import HistoryMetrics
from chat_history.runtime import HistoryRuntime
from chat_history.settings import HistorySettings
from chat_history.storage.sqlite import SqliteHistoryStore
from chat_shared.keys import (
    MEMBERS_SENTINEL,
    members_key,
    members_loaded_key,
    members_rebuild_lease_key,
    user_conversations,
)
from chat_shared.membership import MembershipCache
from chat_shared.web.observability import ServiceMetrics
from tests.history.conftest import StartHistory, Users
from tests.history.helpers import Api, UserDirectoryApp
from tests.support.tokens import TokenMinter
from tests.support.waiting import eventually

SHARDS = 4


async def test_empty_differs_from_not_cached(redis: Redis) -> None:
    cache = MembershipCache(redis, SHARDS)
    assert await cache.members("c1") is None
    assert await cache.is_member("c1", "u1") is None
    assert await cache.kind("c1") is None
    assert await cache.replace("c1", "group", ["u1", "u2"])
    assert await cache.members("c1") == {"u1", "u2"}
    assert await cache.is_member("c1", "u1") is True
    assert await cache.is_member("c1", "u3") is False
    assert await cache.kind("c1") == "group"
    assert await cache.replace("c1", "group", [])
    assert await cache.members("c1") == frozenset()
    assert await cache.is_member("c1", "u1") is False
    # The set holds the sentinel the ingest script and the fan-out rely on.
    assert await redis.smembers(members_key("c1", SHARDS)) == {MEMBERS_SENTINEL.encode()}
    assert await redis.ttl(members_key("c1", SHARDS)) == -1, "cached sets never expire"


async def test_an_older_ticket_never_overwrites_a_newer_state(redis: Redis) -> None:
    cache = MembershipCache(redis, SHARDS)
    early, late = await cache.ticket(), await cache.ticket()
    assert late > early
    assert await cache.replace("c1", "group", ["u1"], ticket=late)
    assert not await cache.replace("c1", "group", ["u1", "stale"], ticket=early)
    assert await cache.members("c1") == {"u1"}
    assert await cache.conversations_of("stale") == frozenset()


async def test_per_user_conversation_sets_follow_the_members(redis: Redis) -> None:
    cache = MembershipCache(redis, SHARDS)
    await cache.replace("c1", "group", ["u1", "u2"])
    await cache.replace("c2", "direct", ["u1", "u3"])
    assert await cache.conversations_of("u1") == {"c1", "c2"}
    await cache.replace("c1", "group", ["u1"])
    assert await cache.conversations_of("u2") == frozenset()
    assert await redis.smembers(user_conversations("u1")) == {b"c1", b"c2"}


async def test_membership_changes_are_written_through(api: Api, users: Users, redis: Redis) -> None:
    cache = MembershipCache(redis, SHARDS)
    group = await api.group(users.alice, [users.bob])
    assert await cache.members(group["id"]) == {users.alice, users.bob}
    assert await cache.kind(group["id"]) == "group"
    direct = (await api.direct(users.alice, users.carol)).json()
    assert await cache.members(direct["id"]) == {users.alice, users.carol}
    assert await cache.kind(direct["id"]) == "direct"

    path = f"/v1/conversations/{group['id']}/members"
    await api.call("POST", path, users.alice, json={"user_ids": [users.dave]})
    assert await cache.members(group["id"]) == {users.alice, users.bob, users.dave}
    await api.call("DELETE", f"{path}/{users.bob}", users.alice)
    assert await cache.members(group["id"]) == {users.alice, users.dave}
    assert group["id"] not in await cache.conversations_of(users.bob)
    assert (await api.send(users.bob, group["id"], "hi", "k1")).status_code == 404


async def test_a_cache_miss_is_filled_from_the_store(api: Api, users: Users, redis: Redis) -> None:
    cache = MembershipCache(redis, SHARDS)
    group = await api.group(users.alice, [users.bob])
    await redis.delete(members_key(group["id"], SHARDS))
    assert (await api.messages(users.stranger, group["id"])).status_code == 404
    assert await cache.members(group["id"]) == {users.alice, users.bob}
    await redis.delete(members_key(group["id"], SHARDS))
    assert (await api.send(users.bob, group["id"], "hi", "k1")).status_code == 201
    assert await cache.members(group["id"]) == {users.alice, users.bob}
    assert await cache.members("01NOSUCHCONVERSATION000000") is None
    assert (await api.messages(users.bob, "01NOSUCHCONVERSATION000000")).status_code == 404
    assert await cache.members("01NOSUCHCONVERSATION000000") is None, "no entry for unknown ids"


async def test_a_start_reads_nothing_from_the_store(
    runtime: HistoryRuntime, users: Users, settings: HistorySettings, directory: UserDirectoryApp
) -> None:
    for name in ("a", "b", "c", "d", "e", "f"):
        await runtime.conversations.create_group(users.alice, name, [users.bob], bearer_token="t")
    await runtime.maintain_once()  # the first pod marks the cache loaded
    second = await HistoryRuntime.open(
        settings,
        HistoryMetrics(ServiceMetrics("history")),
        http_transport=httpx2.ASGITransport(app=directory.asgi()),
    )
    try:
        assert isinstance(second.store, SqliteHistoryStore)
        assert second.store.db.transactions_run == 0
        await second.maintain_once()  # the cache holds its loaded marker: no rebuild
        assert second.store.db.transactions_run == 0
    finally:
        await second.close()


async def test_one_pod_rebuilds_at_a_time(runtime: HistoryRuntime, redis: Redis) -> None:
    await redis.delete(members_loaded_key())
    assert await runtime.membership.leases.acquire(members_rebuild_lease_key(), "other", 60_000)
    assert await runtime.membership.ensure_loaded() is False, "another pod holds the lease"
    await redis.delete(members_rebuild_lease_key())
    assert await runtime.membership.ensure_loaded() is True
    assert not await redis.exists(members_rebuild_lease_key()), "the lease is given back"


async def test_rebuild_restores_everything(
    runtime: HistoryRuntime, users: Users, redis: Redis
) -> None:
    group = await runtime.conversations.create_group(
        users.alice, "g", [users.bob, users.carol], bearer_token="t"
    )
    direct, _ = await runtime.conversations.create_direct(
        users.dave, [users.alice], bearer_token="t"
    )
    await redis.flushall()
    assert await runtime.membership.ensure_loaded() is True
    assert await runtime.membership.ensure_loaded() is False, "the marker is back"
    cache = runtime.cache
    assert await cache.members(group.conversation.id) == {users.alice, users.bob, users.carol}
    assert await cache.members(direct.conversation.id) == {users.alice, users.dave}
    assert await cache.conversations_of(users.alice) == {
        group.conversation.id,
        direct.conversation.id,
    }


async def test_history_heals_the_cache_after_redis_loses_its_data(
    start_history: StartHistory,
    minter: TokenMinter,
    users: Users,
    redis: Redis,
    stored: SqliteHistoryStore,
) -> None:
    running = start_history(maintenance_interval_seconds=0.05)
    api = Api(running.url, minter)
    cache = MembershipCache(redis, SHARDS)
    try:
        group = await api.group(users.alice, [users.bob])
        await api.send(users.alice, group["id"], "before", "k1")

        async def persisted() -> bool:
            return await stored.last_seq(group["id"]) == 1

        await eventually(persisted, "the first message stored")
        await redis.flushall()

        async def healed() -> bool:
            return await cache.is_loaded() and await cache.members(group["id"]) == {
                users.alice,
                users.bob,
            }

        await eventually(healed, "the membership cache rebuilt")
        # The ingest re-seeds the counter from the store: no seq is reused.
        response = await api.send(users.bob, group["id"], "after", "k2")
        assert response.status_code == 201 and response.json()["seq"] == 2
    finally:
        await api.close()
