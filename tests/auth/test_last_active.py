"""Last activity: the presence stream's entries end up on profiles, through the running
app's consumer, on real Valkey and SQLite.

Each test waits until the ``auth`` group has delivered its last entry and has nothing
pending: entries are acknowledged only after they are written, so the store then holds
everything the stream said.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from chat_auth.app import create_app
from chat_auth.last_active import GROUP, LastActiveConsumer
from chat_auth.storage import open_auth_store
from chat_auth.storage.sqlite import SqliteAuthStore
from chat_shared.ids import new_id
from chat_shared.keys import LAST_ACTIVE_STREAM
from chat_shared.membership import MembershipCache
from chat_shared.ports.auth import UserRecord
from chat_shared.redis import connect_redis
from chat_shared.store.migrate import migrate_sqlite, sqlite_path
from chat_shared.web.observability import ServiceMetrics
from tests.auth.conftest import AuthClient, running


@pytest.fixture(params=["single", "cluster"])
def redis_topology(request: pytest.FixtureRequest) -> str:
    """The last-active consumer on one Valkey and on a Valkey Cluster."""
    return str(request.param)


OpenClient = Callable[..., contextlib.AbstractAsyncContextManager[AuthClient]]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_ago(seconds: float) -> int:
    return int((time.time() - seconds) * 1000)


def moment(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def stream_position(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, seq = text.split("-")
    return int(ms), int(seq)


async def went_offline(redis: Redis, user_id: str, ms: int) -> str:
    """Append what a gateway appends when a user's last device goes offline."""
    return await add_entry(redis, {"u": user_id, "t": str(ms)})


async def add_entry(redis: Redis, fields: dict[str, str]) -> str:
    entry_id = await redis.xadd(LAST_ACTIVE_STREAM, fields)  # type: ignore[arg-type]
    return entry_id.decode()


async def group_info(redis: Redis) -> dict[str, Any] | None:
    if not await redis.exists(LAST_ACTIVE_STREAM):
        return None
    for group in await redis.xinfo_groups(LAST_ACTIVE_STREAM):
        if group["name"] in (GROUP, GROUP.encode()):
            info: dict[str, Any] = group
            return info
    return None


async def wait_until_recorded(redis: Redis, entry_id: str, seconds: float = 10.0) -> None:
    """Poll until the group has delivered ``entry_id`` and acknowledged everything."""
    deadline = time.monotonic() + seconds
    while True:
        group = await group_info(redis)
        if (
            group is not None
            and stream_position(group["last-delivered-id"]) >= stream_position(entry_id)
            and group["pending"] == 0
        ):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"entry {entry_id} not recorded in {seconds} s: {group}")
        await asyncio.sleep(0.02)


async def wait_for_group(redis: Redis, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while await group_info(redis) is None:
        if time.monotonic() > deadline:
            raise AssertionError("the consumer group was never created")
        await asyncio.sleep(0.02)


async def last_active(api: AuthClient, user_id: str, pair: dict[str, Any]) -> datetime | None:
    response = await api.http.get(f"/v1/users/{user_id}", headers=api.bearer(pair))
    assert response.status_code == 200, response.text
    value = response.json()["last_active_at"]
    return None if value is None else datetime.fromisoformat(value)


async def share_a_conversation(api: AuthClient, redis: Redis, *user_ids: str) -> None:
    """As history records a conversation, in the membership cache auth reads."""
    cache = MembershipCache(redis, api.settings.ingest_shards)
    await cache.replace(new_id(), "group", user_ids)


async def test_a_stream_entry_shows_on_every_profile_view(api: AuthClient, redis: Redis) -> None:
    alice, alice_pair = await api.user("alice")
    bob, bob_pair = await api.user("bob")
    await share_a_conversation(api, redis, alice["id"], bob["id"])
    ms = ms_ago(60)
    await wait_until_recorded(redis, await went_offline(redis, alice["id"], ms))

    public = await api.http.get(f"/v1/users/{alice['id']}", headers=api.bearer(bob_pair))
    shown = public.json()["last_active_at"]
    assert shown.endswith("Z")
    assert datetime.fromisoformat(shown) == moment(ms)
    by_ids = await api.http.get(
        "/v1/users", params={"ids": f"{alice['id']},{bob['id']}"}, headers=api.bearer(bob_pair)
    )
    assert [u["last_active_at"] for u in by_ids.json()["users"]] == [shown, None]
    by_prefix = await api.http.get("/v1/users", params={"q": "ali"}, headers=api.bearer(bob_pair))
    assert [u["last_active_at"] for u in by_prefix.json()["users"]] == [shown]
    own = await api.http.get("/v1/users/me", headers=api.bearer(alice_pair))
    assert own.json()["last_active_at"] == shown


async def test_a_stranger_does_not_see_when_someone_was_last_active(
    api: AuthClient, redis: Redis
) -> None:
    alice, _ = await api.user("alice")
    _, stranger = await api.user("mallory")
    await wait_until_recorded(redis, await went_offline(redis, alice["id"], ms_ago(60)))
    profile = await api.http.get(f"/v1/users/{alice['id']}", headers=api.bearer(stranger))
    assert profile.status_code == 200 and profile.json()["last_active_at"] is None
    found = await api.http.get("/v1/users", params={"q": "alice"}, headers=api.bearer(stranger))
    assert [u["last_active_at"] for u in found.json()["users"]] == [None]


async def test_an_older_entry_does_not_move_it_back(api: AuthClient, redis: Redis) -> None:
    alice, pair = await api.user("alice")
    later, earlier = ms_ago(10), ms_ago(3600)
    await wait_until_recorded(redis, await went_offline(redis, alice["id"], later))
    assert await last_active(api, alice["id"], pair) == moment(later)
    await wait_until_recorded(redis, await went_offline(redis, alice["id"], earlier))
    assert await last_active(api, alice["id"], pair) == moment(later)


async def test_malformed_entries_are_skipped_and_later_ones_apply(
    api: AuthClient, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    alice, pair = await api.user("alice")
    for malformed in (
        {"u": alice["id"], "t": "yesterday"},
        {"t": str(ms_ago(5))},
        {"u": "not-a-user-id", "t": str(ms_ago(5))},
        {"u": alice["id"], "t": str(ms_ago(-86400))},  # a day ahead: a broken clock
    ):
        await add_entry(redis, malformed)
    ms = ms_ago(30)
    await wait_until_recorded(redis, await went_offline(redis, alice["id"], ms))

    assert await last_active(api, alice["id"], pair) == moment(ms)
    skipped = [r for r in caplog.records if r.getMessage() == "malformed last-active entry skipped"]
    assert len(skipped) == 4
    metrics = (await api.http.get("/metrics")).text
    assert 'chat_auth_last_active_entries_total{outcome="skipped"} 4.0' in metrics
    assert 'chat_auth_last_active_entries_total{outcome="recorded"} 1.0' in metrics


async def test_entries_for_unknown_users_are_acknowledged(api: AuthClient, redis: Redis) -> None:
    alice, pair = await api.user("alice")
    await went_offline(redis, "01M85EYCPR3ZB4066H0VXKNWVC", ms_ago(5))
    ms = ms_ago(10)
    await wait_until_recorded(redis, await went_offline(redis, alice["id"], ms))
    assert await last_active(api, alice["id"], pair) == moment(ms)


@pytest.mark.parametrize("group_existed", [True, False], ids=["group-existed", "no-group-yet"])
async def test_entries_written_while_down_are_applied_at_start(
    open_client: OpenClient, redis: Redis, group_existed: bool
) -> None:
    async with open_client() as api:
        alice, pair = await api.user("alice")
        await wait_for_group(redis)
    if not group_existed:
        await redis.delete(LAST_ACTIVE_STREAM)  # the stream and its group
    ms = ms_ago(20)
    entry_id = await went_offline(redis, alice["id"], ms)

    async with open_client() as api:
        await wait_until_recorded(redis, entry_id)
        pair = await api.login("alice")
        assert await last_active(api, alice["id"], pair) == moment(ms)


async def test_entries_a_crashed_process_left_pending_are_taken_over(
    open_client: OpenClient, redis: Redis
) -> None:
    async with open_client() as api:
        alice, _ = await api.user("alice")
        await wait_for_group(redis)
    ms = ms_ago(20)
    entry_id = await went_offline(redis, alice["id"], ms)
    # A process that read the entry and died before acknowledging it.
    taken = await redis.xreadgroup(GROUP, "auth-crashed", {LAST_ACTIVE_STREAM: ">"})
    assert [entry for _, entry in taken[0][1]] == [{b"u": alice["id"].encode(), b"t": b"%d" % ms}]

    async with open_client(last_active_claim_idle_seconds=0) as api:
        await wait_until_recorded(redis, entry_id)
        pair = await api.login("alice")
        assert await last_active(api, alice["id"], pair) == moment(ms)


async def test_the_consumer_recreates_a_lost_group(api: AuthClient, redis: Redis) -> None:
    alice, pair = await api.user("alice")
    await wait_for_group(redis)
    await redis.delete(LAST_ACTIVE_STREAM)  # as when Redis loses its data
    ms = ms_ago(15)
    await wait_until_recorded(redis, await went_offline(redis, alice["id"], ms))
    assert await last_active(api, alice["id"], pair) == moment(ms)


async def test_a_clean_stop_leaves_the_group(open_client: OpenClient, redis: Redis) -> None:
    async with open_client():
        await wait_for_group(redis)
        assert len(await redis.xinfo_consumers(LAST_ACTIVE_STREAM, GROUP)) == 1
    assert await redis.xinfo_consumers(LAST_ACTIVE_STREAM, GROUP) == []


async def test_the_consumer_keeps_retrying_while_redis_is_away(
    make_settings: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings()
    store = await open_auth_store(settings)
    unreachable = connect_redis("redis://127.0.0.1:1")  # nothing listens on port 1
    entries = ServiceMetrics("auth-test").counter("entries", "entries", ("outcome",))
    consumer = LastActiveConsumer(
        unreachable, store, batch_size=10, claim_idle_seconds=60, entries_total=entries
    )
    task = asyncio.create_task(consumer.run())
    try:
        deadline, failures = time.monotonic() + 10, 0
        while failures < 3:  # each failed round is logged, and the loop goes on
            failures = sum(r.getMessage() == "stream round failed" for r in caplog.records)
            assert not task.done(), task
            assert time.monotonic() < deadline, f"only {failures} failed rounds logged"
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await unreachable.aclose()
        await store.close()


class StoreFailingOnce(SqliteAuthStore):
    """A store whose first last-activity write fails, as when the database is away."""

    failures_left = 1

    async def record_last_active(self, entries: Sequence[tuple[str, datetime]]) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise sqlite3.OperationalError("database is locked")
        await super().record_last_active(entries)


async def test_a_failed_write_is_retried_from_the_pending_entries(
    make_settings: Callable[..., Any], redis: Redis
) -> None:
    settings = make_settings()
    await asyncio.to_thread(migrate_sqlite, settings, "auth")
    store = StoreFailingOnce.open(sqlite_path(settings, "auth"))
    user = UserRecord(
        id=new_id(),
        username="alice",
        email="alice@example.com",
        display_name="Alice",
        password_hash="$argon2id$stand-in",
        token_version=0,
        created_at=datetime.now(UTC),
    )
    await store.create_user(user)
    ms = ms_ago(30)
    entry_id = await went_offline(redis, user.id, ms)
    entries = ServiceMetrics("auth-test").counter("entries", "entries", ("outcome",))
    consumer = LastActiveConsumer(
        redis, store, batch_size=10, claim_idle_seconds=60, entries_total=entries
    )
    task = asyncio.create_task(consumer.run())
    try:
        await wait_until_recorded(redis, entry_id)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    stored = await store.get_user(user.id)
    await store.close()
    assert store.failures_left == 0
    assert stored is not None
    assert stored.last_active_at == moment(ms)


async def test_the_app_stops_promptly_right_after_starting(
    make_settings: Callable[..., Any], redis: Redis
) -> None:
    # A stop that lands while the consumer opens its first connection once went unheard.
    for _ in range(5):
        app = running(create_app(make_settings()))
        await app.__aenter__()
        async with asyncio.timeout(3):
            await app.__aexit__(None, None, None)
