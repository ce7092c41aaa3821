"""The storage contract of the auth domain, run against every engine.

SQLite and a real Cassandra node (LOCAL_QUORUM, as in production), the same cases on
both. Both adapters must give the same answers.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chat_auth.settings import AuthSettings
from chat_auth.storage import open_auth_store
from chat_shared.ids import new_id
from chat_shared.ports.auth import (
    AuthStore,
    EmailTaken,
    RefreshTokenRecord,
    UsernameTaken,
    UserRecord,
)
from chat_shared.store.migrate import migrate_cassandra
from tests.conftest import CassandraEndpoint


@pytest.fixture(params=["sqlite", "cassandra"])
async def store(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[AuthStore]:
    if request.param == "cassandra":
        cassandra_node: CassandraEndpoint = request.getfixturevalue("cassandra")
        settings = AuthSettings(data_dir=data_dir, **cassandra_node.settings("chat_auth_contract"))  # type: ignore[arg-type]
        await migrate_cassandra(settings, "auth")
    else:
        settings = AuthSettings(data_dir=data_dir)
    opened = await open_auth_store(settings)
    yield opened
    await opened.close()


def now() -> datetime:
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def make_user(prefix: str = "u", **overrides: object) -> UserRecord:
    # Random names: a Cassandra keyspace outlives one run.
    name = f"{prefix}{secrets.token_hex(4)}"
    values: dict[str, object] = {
        "id": new_id(),
        "username": name,
        "email": f"{name}@Example.com",
        "display_name": name.title(),
        "password_hash": "$argon2id$stand-in",
        "token_version": 0,
        "created_at": now(),
    }
    values.update(overrides)
    return UserRecord(**values)


def make_token(
    user_id: str, family_id: str | None = None, *, expires_in: float = 3600
) -> RefreshTokenRecord:
    issued = now()
    return RefreshTokenRecord(
        family_id=family_id or new_id(),
        token_hash=secrets.token_hex(32),
        user_id=user_id,
        issued_at=issued,
        expires_at=issued + timedelta(seconds=expires_in),
        used=False,
        family_revoked=False,
    )


async def test_created_users_read_back_identically(store: AuthStore) -> None:
    user = make_user()
    await store.create_user(user)
    assert await store.get_user(user.id) == user
    assert await store.find_by_username(user.username) == user
    assert await store.find_by_email(user.email.lower()) == user
    assert await store.get_user(new_id()) is None
    assert await store.find_by_username("nobody-" + secrets.token_hex(4)) is None


async def test_times_keep_their_milliseconds(store: AuthStore) -> None:
    # A float timestamp turns this one into ...24.790.
    moment = datetime(2004, 3, 23, 15, 57, 24, 791000, tzinfo=UTC)
    user = make_user(created_at=moment, last_active_at=moment)
    await store.create_user(user)
    assert await store.get_user(user.id) == user


async def test_usernames_and_emails_are_unique(store: AuthStore) -> None:
    user = make_user()
    await store.create_user(user)
    with pytest.raises(UsernameTaken):
        await store.create_user(make_user(username=user.username))
    with pytest.raises(EmailTaken):
        await store.create_user(make_user(email=user.email.upper()))
    with pytest.raises(UsernameTaken):  # both taken: the username is reported
        await store.create_user(make_user(username=user.username, email=user.email))


async def test_racing_signups_for_one_name_create_one_account(store: AuthStore) -> None:
    name = f"race{secrets.token_hex(4)}"
    outcomes = await asyncio.gather(
        *(store.create_user(make_user(username=name)) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(outcome is None for outcome in outcomes) == 1
    assert all(isinstance(o, UsernameTaken) for o in outcomes if o is not None)


async def test_get_users_keeps_the_order_asked_and_skips_unknown(store: AuthStore) -> None:
    first, second = make_user(), make_user()
    for user in (first, second):
        await store.create_user(user)
    found = await store.get_users([second.id, new_id(), first.id, second.id])
    assert [u.id for u in found] == [second.id, first.id]


async def test_search_by_prefix_in_username_order(store: AuthStore) -> None:
    tag = secrets.token_hex(3)
    names = [f"s{tag}b", f"s{tag}a", f"s{tag}c", f"t{tag}a"]
    for name in names:
        await store.create_user(make_user(username=name, email=f"{name}@example.com"))
    hits = await store.search_usernames(f"s{tag}", 10)
    assert [u.username for u in hits] == [f"s{tag}a", f"s{tag}b", f"s{tag}c"]
    assert [u.username for u in await store.search_usernames(f"s{tag}", 2)] == names[1::-1]
    # A one-character prefix spans partitions on Cassandra; the answer is the same.
    one = await store.search_usernames("s", 1000)
    assert {f"s{tag}a", f"s{tag}b", f"s{tag}c"} <= {u.username for u in one}
    assert [u.username for u in one] == sorted(u.username for u in one)


async def test_search_pages_follow_the_cursor(store: AuthStore) -> None:
    tag = secrets.token_hex(3)
    names = sorted(f"p{tag}{suffix}" for suffix in ("a", "b", "b.", "c", "d"))
    for name in names:
        await store.create_user(make_user(username=name, email=f"{name}@example.com"))
    pages, after = [], None
    while True:
        page = await store.search_usernames(f"p{tag}", 2, after)
        if not page:
            break
        pages.append([u.username for u in page])
        after = page[-1].username
    assert pages == [names[0:2], names[2:4], names[4:]]


async def test_update_profile(store: AuthStore) -> None:
    user, other = make_user(), make_user()
    fresh = f"Fresh{secrets.token_hex(4)}@Example.org"
    await store.create_user(user)
    await store.create_user(other)
    updated = await store.update_profile(user.id, display_name="New Name", email=fresh)
    assert updated is not None
    assert (updated.display_name, updated.email) == ("New Name", fresh)
    assert await store.find_by_email(fresh.lower()) == updated
    assert await store.find_by_email(user.email.lower()) is None
    with pytest.raises(EmailTaken):
        await store.update_profile(user.id, email=other.email)
    # Changing only the case of one's own email is not a conflict.
    assert await store.update_profile(user.id, email=fresh.upper()) is not None
    assert await store.update_profile(new_id(), display_name="x") is None


async def test_password_hash_and_token_version(store: AuthStore) -> None:
    user = make_user()
    await store.create_user(user)
    assert await store.set_password_hash(user.id, "h1", bump_token_version=False) == 0
    assert await store.set_password_hash(user.id, "h2", bump_token_version=True) == 1
    stored = await store.get_user(user.id)
    assert stored is not None
    assert (stored.password_hash, stored.token_version) == ("h2", 1)
    assert await store.set_password_hash(new_id(), "h", bump_token_version=True) is None


async def test_delete_frees_username_and_email(store: AuthStore) -> None:
    user = make_user()
    await store.create_user(user)
    await store.add_refresh_token(make_token(user.id))
    removed = await store.delete_user(user.id)
    assert removed == user
    assert await store.get_user(user.id) is None
    assert await store.find_by_username(user.username) is None
    assert await store.search_usernames(user.username, 5) == []
    assert await store.delete_user(user.id) is None
    await store.create_user(make_user(username=user.username, email=user.email))


async def test_last_active_only_moves_forward(store: AuthStore) -> None:
    user, bystander = make_user(), make_user()
    for account in (user, bystander):
        await store.create_user(account)
    earlier, later = now() - timedelta(minutes=5), now()

    await store.record_last_active([(user.id, earlier)])
    first = await store.get_user(user.id)
    assert first is not None
    assert first.last_active_at == earlier

    # In one batch the latest time of a user counts, whatever the order.
    await store.record_last_active([(user.id, later), (user.id, earlier)])
    await store.record_last_active([(user.id, earlier)])
    moved = await store.get_user(user.id)
    assert moved is not None
    assert moved.last_active_at == later
    assert moved == replace(user, last_active_at=later)  # nothing else changed

    # Every way of reading an account carries the time.
    assert [u.last_active_at for u in await store.get_users([user.id])] == [later]
    assert await store.find_by_username(user.username) == moved
    assert await store.search_usernames(user.username, 1) == [moved]
    untouched = await store.get_user(bystander.id)
    assert untouched is not None
    assert untouched.last_active_at is None


async def test_last_active_of_unknown_or_deleted_users_is_ignored(store: AuthStore) -> None:
    gone, kept = make_user(), make_user()
    for account in (gone, kept):
        await store.create_user(account)
    await store.delete_user(gone.id)
    await store.record_last_active([])
    await store.record_last_active([(gone.id, now()), (new_id(), now()), (kept.id, now())])
    # No account comes back to life (Cassandra updates are upserts) and the rest apply.
    assert await store.get_user(gone.id) is None
    assert await store.get_users([gone.id]) == []
    survivor = await store.get_user(kept.id)
    assert survivor is not None
    assert survivor.last_active_at is not None


async def test_refresh_tokens_round_trip(store: AuthStore) -> None:
    token = make_token(new_id())
    await store.add_refresh_token(token)
    assert await store.get_refresh_token(token.family_id, token.token_hash) == token
    assert await store.get_refresh_token(token.family_id, "0" * 64) is None
    assert await store.get_refresh_token(new_id(), token.token_hash) is None


async def test_a_token_is_marked_used_exactly_once(store: AuthStore) -> None:
    token = make_token(new_id())
    await store.add_refresh_token(token)
    results = await asyncio.gather(
        *(store.mark_refresh_token_used(token.family_id, token.token_hash) for _ in range(4))
    )
    assert sorted(results) == [False, False, False, True]
    record = await store.get_refresh_token(token.family_id, token.token_hash)
    assert record is not None
    assert record.used
    assert not await store.mark_refresh_token_used(new_id(), token.token_hash)


async def test_revoking_families(store: AuthStore) -> None:
    user_id = new_id()
    first = make_token(user_id)
    second_family = make_token(user_id)
    sibling = make_token(user_id, first.family_id)
    other_user = make_token(new_id())
    for token in (first, second_family, sibling, other_user):
        await store.add_refresh_token(token)
    await store.revoke_refresh_family(first.family_id)
    for token in (first, sibling):
        record = await store.get_refresh_token(token.family_id, token.token_hash)
        assert record is not None
        assert record.family_revoked
    assert await store.revoke_user_refresh_families(user_id) >= 1
    record = await store.get_refresh_token(second_family.family_id, second_family.token_hash)
    assert record is not None
    assert record.family_revoked
    untouched = await store.get_refresh_token(other_user.family_id, other_user.token_hash)
    assert untouched is not None
    assert not untouched.family_revoked


async def test_purge_keeps_live_tokens(store: AuthStore) -> None:
    live = make_token(new_id())
    expired = make_token(new_id(), expires_in=-60)
    await store.add_refresh_token(live)
    await store.add_refresh_token(expired)
    await store.purge_expired_refresh_tokens(now())
    assert await store.get_refresh_token(live.family_id, live.token_hash) == live
    leftover = await store.get_refresh_token(expired.family_id, expired.token_hash)
    # Gone (SQLite purges it, Cassandra's TTL drops it) or at worst still expired.
    assert leftover is None or leftover.expires_at < now()
