"""Coming back: a restart that resumes from the saved device state, a cursor that fell
out of the inbox (``resync`` filled from history), and tokens the gateway refuses or
that expire while the socket is open."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from chat_auth.keyring import Keyring
from chat_client import (
    ConnectionChanged,
    DeviceState,
    ErrorReceived,
    MessageReceived,
    Resynced,
    TokenPair,
)
from chat_client.tokens import token_claims
from chat_shared.devstack import Stack
from tests.client.helpers import AccountFactory, Collector, confirmed

# Valkey trims an inbox by whole nodes of 100 entries, so with CHAT_INBOX_MAXLEN=10 a
# device away for this many messages has lost its place.
AWAY_FOR_RESYNC = 220


async def test_restart_resumes_from_the_saved_state(
    accounts: AccountFactory, tmp_path: Path
) -> None:
    alice, bob = await asyncio.gather(accounts.new(), accounts.new())
    chat = await alice.client.create_direct(bob.id)
    state_file = tmp_path / "bob-device.json"
    async with alice.client.connect() as alice_session:
        async with bob.client.connect(state_file=state_file) as first_run:
            seen = Collector(first_run)
            await asyncio.wait_for(first_run.wait_connected(), 10)
            for i in range(2):
                await confirmed(alice_session, chat.id, f"first run {i}")
            await seen.wait_for_seq(chat.id, 2)
            await seen.stop()
        saved = DeviceState.load(state_file)
        assert saved.last_seqs == {chat.id: 2} and saved.cursor is not None

        for i in range(3):
            await confirmed(alice_session, chat.id, f"while closed {i}")

    # The application restarts: a new client and session built from the file.
    restarted = accounts.client(tokens=bob.client.tokens.pair)
    async with restarted.connect(state_file=state_file) as second_run:
        seen = Collector(second_run)
        await seen.wait_for_seq(chat.id, 5)
        await asyncio.sleep(0.5)  # room for any repeat to show up
        assert [m.body for m in seen.messages] == [f"while closed {i}" for i in range(3)]
        assert second_run.state.device_id == saved.device_id
        await seen.stop()
    assert DeviceState.load(state_file).last_seqs == {chat.id: 5}


async def test_the_gateway_keeps_the_cursor_the_device_acknowledged(
    accounts: AccountFactory,
) -> None:
    alice, bob = await asyncio.gather(accounts.new(), accounts.new())
    chat = await alice.client.create_direct(bob.id)
    device = DeviceState()
    async with alice.client.connect() as alice_session:
        async with bob.client.connect(state=device) as first:
            seen = Collector(first)
            await asyncio.wait_for(first.wait_connected(), 10)
            for i in range(3):
                await confirmed(alice_session, chat.id, f"seen {i}")
            await seen.wait_for_seq(chat.id, 3)
            # Taken events are acknowledged in batches, at the latest after ack_interval
            # (1 s). An ack sent just before closing is not relied on: the gateway may
            # drop it while tearing the socket down.
            await asyncio.sleep(1.5)
            await seen.stop()
        for i in range(2):
            await confirmed(alice_session, chat.id, f"missed {i}")

    # The same device with its cursor and seqs forgotten: only the gateway knows
    # where it stopped, from the acknowledgements.
    forgetful = DeviceState(device_id=device.device_id)
    async with bob.client.connect(state=forgetful) as second:
        seen = Collector(second)
        await seen.wait_for_seq(chat.id, 5)
        await asyncio.sleep(0.5)  # room for any repeat to show up
        await seen.stop()
    assert [m.body for m in seen.messages] == ["missed 0", "missed 1"]


async def test_resync_fills_from_history_every_message_once_in_order(
    accounts: AccountFactory,
) -> None:
    alice, bob = await asyncio.gather(accounts.new(), accounts.new())
    chat = await alice.client.create_direct(bob.id)
    group = await alice.client.create_group("resync", [bob.id])
    state = DeviceState()
    async with alice.client.connect() as alice_session:
        async with bob.client.connect(state=state) as before:
            seen = Collector(before)
            await asyncio.wait_for(before.wait_connected(), 10)
            await confirmed(alice_session, chat.id, "before 1")
            await seen.wait_for_seq(chat.id, 1)
            await seen.stop()

        sends = [alice_session.send(chat.id, f"away {i}") for i in range(AWAY_FOR_RESYNC)]
        sends += [alice_session.send(group.id, f"group {i}") for i in range(5)]
        await asyncio.wait_for(asyncio.gather(*sends), 60)

        async with bob.client.connect(state=state) as after:
            seen = Collector(after)
            await seen.wait_until(lambda: bool(seen.of(Resynced)), "resync", 30)
            await confirmed(alice_session, chat.id, "after")
            last = AWAY_FOR_RESYNC + 2
            await seen.wait_for_seq(chat.id, last, 30)
            await seen.wait_for_seq(group.id, 5, 30)
            await asyncio.sleep(0.5)  # room for any repeat to show up
            await seen.stop()

    in_chat = [m for m in seen.messages if m.conversation_id == chat.id]
    assert [m.seq for m in in_chat] == list(range(2, last + 1))
    in_group = [m for m in seen.messages if m.conversation_id == group.id]
    assert [m.seq for m in in_group] == [1, 2, 3, 4, 5]
    sources = {e.source for e in seen.events if isinstance(e, MessageReceived)}
    assert "history" in sources
    (resync,) = seen.of(Resynced)
    assert isinstance(resync, Resynced) and resync.filled >= AWAY_FOR_RESYNC - 10
    assert state.last_seqs == {chat.id: last, group.id: 5}


async def test_refused_token_closes_4401_then_refreshes_and_reconnects(
    accounts: AccountFactory,
) -> None:
    alice = await accounts.new()
    real = alice.client.tokens.pair
    assert real is not None
    client = accounts.client(tokens=TokenPair("not-a-jwt", real.refresh_token, 900, time.time()))
    async with client.connect() as session:
        seen = Collector(session)
        await asyncio.wait_for(session.wait_connected(), 10)
        changes = [e for e in seen.events if isinstance(e, ConnectionChanged)]
        await seen.stop()
    assert [(e.state, e.close_code) for e in changes[:3]] == [
        ("connecting", None),
        ("disconnected", 4401),
        ("connecting", None),
    ]
    assert session.user_id == alice.id
    assert client.tokens.pair is not None and client.tokens.pair.access_token != "not-a-jwt"


async def test_refreshed_token_is_handed_to_the_open_socket(
    accounts: AccountFactory, stack: Stack
) -> None:
    alice, bob = await asyncio.gather(accounts.new(), accounts.new())
    chat = await alice.client.create_direct(bob.id)
    real = alice.client.tokens.pair
    assert real is not None
    # The same access token re-signed to expire in 3 s: the gateway closes a socket
    # whose token expires (4401) unless a fresh one arrives in time.
    keyring = Keyring.load(stack.data_dir / "keys", generate=False)
    now = int(time.time())
    claims = {**token_claims(real.access_token), "iat": now, "exp": now + 3}
    short = TokenPair(keyring.sign(claims), real.refresh_token, 3, now)
    client = accounts.client(tokens=short, refresh_margin=1.5)
    async with client.connect() as session:
        seen = Collector(session)
        await asyncio.wait_for(session.wait_connected(), 10)
        first_session = session.session_id
        await asyncio.sleep(5)  # past the short token's expiry
        assert client.tokens.pair is not None and client.tokens.pair.expires_in == 60
        sent = await confirmed(session, chat.id, "still here")
        assert sent.seq == 1
        assert session.session_id == first_session
        changes = [e.state for e in seen.events if isinstance(e, ConnectionChanged)]
        assert changes == ["connecting", "connected"], changes
        assert not seen.of(ErrorReceived)
        await seen.stop()
