"""The auth adapter on a real Cassandra node where only Cassandra can go wrong:
answers that go missing and writers that are slow (uniqueness there is built from
lightweight transactions across partitions, not a unique index), and the shape of
the username search index.

The faults are injected around the real connection (tests/support/cassandra_faults):
every statement still runs on the node.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chat_auth.settings import AuthSettings
from chat_auth.storage.cassandra import USERNAME_PREFIX_BUCKETS, CassandraAuthStore
from chat_shared.ports.auth import EmailTaken, UsernameTaken
from chat_shared.store.cassandra import CassandraStore
from chat_shared.store.migrate import migrate_cassandra
from tests.auth.test_store_contract import make_token, make_user
from tests.conftest import CassandraEndpoint
from tests.support.cassandra_faults import FaultyCassandra


@pytest.fixture
async def faulty(cassandra: CassandraEndpoint, data_dir: Path) -> AsyncIterator[FaultyCassandra]:
    settings = AuthSettings(data_dir=data_dir, **cassandra.settings("chat_auth_contract"))  # type: ignore[arg-type]
    await migrate_cassandra(settings, "auth")
    real = await asyncio.to_thread(
        CassandraStore.connect, settings, keyspace=settings.cassandra_keyspace
    )
    yield FaultyCassandra(real)
    await asyncio.to_thread(real.close)


def auth_store(store: CassandraStore, **options: object) -> CassandraAuthStore:
    return CassandraAuthStore(store, refresh_retention_seconds=3600, **options)  # type: ignore[arg-type]


async def test_a_sign_up_whose_answer_is_lost_keeps_its_name(faulty: FaultyCassandra) -> None:
    store = auth_store(faulty)
    user = make_user()
    faulty.answer_lost("INSERT INTO users ")
    await store.create_user(user)  # the serial read finds the account written
    assert await store.find_by_username(user.username) == user
    with pytest.raises(UsernameTaken):
        await store.create_user(make_user(username=user.username))
    with pytest.raises(EmailTaken):
        await store.create_user(make_user(email=user.email))


async def test_a_slow_sign_up_overtaken_on_a_stale_claim_keeps_no_account(
    faulty: FaultyCassandra,
) -> None:
    # Zero staleness: the slow sign-up's claim may be taken over at once, the
    # moment its account row is still missing.
    store = auth_store(faulty, stale_claim=timedelta(0))
    slow, fast = make_user(), make_user()
    fast = make_user(username=slow.username)
    held = faulty.hold("INSERT INTO users ", slow.id)
    slow_signup = asyncio.create_task(store.create_user(slow))
    await held.reached.wait()  # both claims taken, the account row not yet written

    await store.create_user(fast)  # takes over the unconfirmed username claim
    held.released.set()
    with pytest.raises(UsernameTaken):
        await slow_signup

    assert await store.find_by_username(slow.username) == fast
    assert await store.get_user(slow.id) is None, "the overtaken account is rolled back"
    assert await store.find_by_email(slow.email_key) is None
    await store.create_user(make_user(email=slow.email))  # and its email is free again


async def test_a_confirmed_claim_is_never_taken_over(faulty: FaultyCassandra) -> None:
    store = auth_store(faulty, stale_claim=timedelta(0))
    user = make_user()
    await store.create_user(user)
    with pytest.raises(UsernameTaken):
        await store.create_user(make_user(username=user.username))
    assert await store.find_by_username(user.username) == user


async def test_a_claim_left_by_a_crashed_sign_up_frees_up(faulty: FaultyCassandra) -> None:
    store = auth_store(faulty)  # the production staleness (a minute)
    name = f"ghost{secrets.token_hex(4)}"
    await faulty.execute(
        "INSERT INTO users_by_username (username, user_id, claimed_at) VALUES (?, ?, ?)",
        (name, "01CRASHEDSIGNUP00000000000", datetime.now(UTC) - timedelta(minutes=5)),
    )
    user = make_user(username=name)
    await store.create_user(user)
    assert await store.find_by_username(name) == user


async def test_a_refresh_whose_answer_is_lost_is_not_taken_for_reuse(
    faulty: FaultyCassandra,
) -> None:
    store = auth_store(faulty)
    user = make_user()
    await store.create_user(user)
    token = make_token(user.id)
    await store.add_refresh_token(token)
    faulty.answer_lost("SET used = true")
    assert await store.mark_refresh_token_used(token.family_id, token.token_hash) is True
    again = await store.mark_refresh_token_used(token.family_id, token.token_hash)
    assert again is False, "a second use is still refused"
    stored = await store.get_refresh_token(token.family_id, token.token_hash)
    assert stored is not None and stored.used and not stored.family_revoked


async def test_a_password_change_whose_answer_is_lost_bumps_the_version_once(
    faulty: FaultyCassandra,
) -> None:
    store = auth_store(faulty)
    user = make_user()
    await store.create_user(user)
    faulty.answer_lost("SET password_hash")
    version = await store.set_password_hash(user.id, "$argon2id$new", bump_token_version=True)
    assert version == user.token_version + 1
    stored = await store.get_user(user.id)
    assert stored is not None and stored.token_version == version


async def test_names_sharing_a_prefix_spread_over_several_partitions(
    faulty: FaultyCassandra,
) -> None:
    store = auth_store(faulty)
    prefix = "q" + secrets.choice("0123456789")
    tag = secrets.token_hex(3)
    names = [f"{prefix}{tag}{n:02d}" for n in range(24)]
    for name in names:
        await store.create_user(make_user(username=name, email=f"{name}@example.com"))
    rows = await faulty.execute(
        "SELECT bucket, username FROM username_prefixes WHERE prefix = ? AND bucket IN ?",
        (prefix, list(range(USERNAME_PREFIX_BUCKETS))),
    )
    buckets = {row["bucket"] for row in rows if row["username"] in names}
    assert len(buckets) >= USERNAME_PREFIX_BUCKETS // 2, "one hot partition per prefix"
    found = await store.search_usernames(f"{prefix}{tag}", 100)
    assert [u.username for u in found] == names
