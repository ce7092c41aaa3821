"""Typed REST calls of the SDK against the real auth and history services."""

from __future__ import annotations

import asyncio
import time

import pytest

from chat_client import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    TokenPair,
    Unauthorized,
    new_client_id,
)
from tests.client.helpers import PASSWORD, AccountFactory, Urls


async def test_signup_login_and_profiles_are_typed(accounts: AccountFactory) -> None:
    alice = await accounts.new()
    bob = await accounts.new()
    me = await alice.client.me()
    assert me.id == alice.id == alice.client.user_id
    assert me.email == f"{alice.username}@example.test"
    assert me.created_at.tzinfo is not None

    renamed = await alice.client.update_me(display_name="Alice A.")
    assert renamed.display_name == "Alice A."
    public = await bob.client.user(alice.id)
    assert (public.username, public.display_name, public.email) == (
        alice.username,
        "Alice A.",
        None,
    )
    found = await bob.client.search_users(alice.username[:10])
    assert alice.id in [u.id for u in found]
    by_id = await bob.client.users_by_id([alice.id, bob.id])
    assert {u.id for u in by_id} == {alice.id, bob.id}


async def test_errors_are_typed_from_problem_json(accounts: AccountFactory) -> None:
    alice = await accounts.new()
    with pytest.raises(Conflict) as taken:
        await alice.client.signup(alice.username, "other@example.test", PASSWORD)
    assert taken.value.status == 409
    assert taken.value.title and taken.value.detail and taken.value.type

    with pytest.raises(InvalidInput) as invalid:
        await alice.client.signup("ok_name_1", "x@example.test", "short")
    assert invalid.value.status == 422
    assert any("password" in error.get("loc", []) for error in invalid.value.errors)

    stranger = accounts.client()
    with pytest.raises(Unauthorized):
        await stranger.login(alice.username, "wrong password!")
    with pytest.raises(NotAuthenticated):
        await stranger.me()

    bob = await accounts.new()
    carol = await accounts.new()
    private = await bob.client.create_direct(carol.id)
    with pytest.raises(NotFound):
        await alice.client.conversation(private.id)
    with pytest.raises(NotFound):
        await alice.client.messages(private.id)
    group = await bob.client.create_group("bob's", [carol.id])
    with pytest.raises(Forbidden):
        await carol.client.add_members(group.id, [alice.id])


async def test_conversations_members_messages_and_read_markers(accounts: AccountFactory) -> None:
    alice, bob, carol = await asyncio.gather(accounts.new(), accounts.new(), accounts.new())
    direct = await alice.client.create_direct(bob.id)
    again = await bob.client.create_direct(alice.id)
    assert again.id == direct.id and direct.kind == "direct"
    assert set(direct.members) == {alice.id, bob.id}

    group = await alice.client.create_group("trio", [bob.id])
    assert (group.kind, group.name, group.owner_id) == ("group", "trio", alice.id)
    grown = await alice.client.add_members(group.id, [carol.id])
    assert set(grown.members) == {alice.id, bob.id, carol.id}
    await carol.client.remove_member(group.id, carol.id)
    assert carol.id not in (await alice.client.conversation(group.id)).members

    posted = [await alice.client.post_message(direct.id, f"m{i}") for i in range(1, 6)]
    assert [m.seq for m in posted] == [1, 2, 3, 4, 5]
    newest = await bob.client.messages(direct.id, limit=2)
    assert [m.seq for m in newest.messages] == [5, 4] and newest.has_more
    older = await bob.client.messages(direct.id, before_seq=4, limit=10)
    assert [m.seq for m in older.messages] == [3, 2, 1] and not older.has_more
    after = await bob.client.messages(direct.id, after_seq=3)
    assert [m.body for m in after.messages] == ["m4", "m5"]
    every = [m.seq async for m in bob.client.iter_messages(direct.id, page_size=2)]
    assert every == [1, 2, 3, 4, 5]

    listed = {c.id: c for c in await bob.client.conversations()}
    assert listed[direct.id].unread_count == 5
    assert listed[direct.id].last_message is not None
    assert listed[direct.id].last_message.body == "m5"
    await bob.client.mark_read(direct.id, 3)
    assert (await bob.client.conversation(direct.id)).unread_count == 2


async def test_post_message_with_the_same_client_id_is_stored_once(
    accounts: AccountFactory,
) -> None:
    alice, bob = await asyncio.gather(accounts.new(), accounts.new())
    chat = await alice.client.create_direct(bob.id)
    client_id = new_client_id()
    first = await alice.client.post_message(chat.id, "only once", client_id=client_id)
    retry = await alice.client.post_message(chat.id, "only once", client_id=client_id)
    assert (retry.id, retry.seq) == (first.id, first.seq)
    history = [m async for m in bob.client.iter_messages(chat.id)]
    assert [m.client_id for m in history] == [client_id]


async def test_access_token_is_refreshed_before_it_expires(accounts: AccountFactory) -> None:
    # Tokens live 60 s in this stack; a 59 s margin makes the renewal due after 1 s.
    alice = await accounts.new(refresh_margin=59.0)
    first = alice.client.tokens.pair
    assert first is not None and first.expires_in == 60
    await asyncio.sleep(1.2)
    assert (await alice.client.me()).id == alice.id
    second = alice.client.tokens.pair
    assert second is not None
    assert second.access_token != first.access_token
    assert second.refresh_token != first.refresh_token
    # The rotated-away refresh token only answers with the same new pair now (the
    # grace for a double refresh), so the client had to keep the new one.
    replay = accounts.client(tokens=first)
    await replay.refresh()
    assert replay.tokens.pair is not None
    assert replay.tokens.pair.refresh_token == second.refresh_token


async def test_a_401_refreshes_once_and_retries(accounts: AccountFactory, urls: Urls) -> None:
    alice = await accounts.new()
    real = alice.client.tokens.pair
    assert real is not None
    # An access token the services refuse, with a lifetime that looks fine locally.
    broken = TokenPair("not-a-jwt", real.refresh_token, 900, time.time())
    client = accounts.client(tokens=broken)
    assert (await client.me()).id == alice.id
    renewed = client.tokens.pair
    assert renewed is not None and renewed.access_token != "not-a-jwt"

    # With a refresh token that is refused too, the call fails and the tokens go.
    hopeless = accounts.client(tokens=TokenPair("not-a-jwt", "not-a-token", 900, time.time()))
    with pytest.raises(Unauthorized):
        await hopeless.me()
    assert hopeless.tokens.pair is None


async def test_logout_revokes_the_refresh_token(accounts: AccountFactory) -> None:
    alice = await accounts.new()
    pair = alice.client.tokens.pair
    assert pair is not None
    await alice.client.logout()
    assert alice.client.tokens.pair is None
    with pytest.raises(Unauthorized):
        await accounts.client(tokens=pair).refresh()
