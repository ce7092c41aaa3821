"""Realtime sessions against the real gateway: chatting, receipts and typing, a dropped
socket that resumes without loss or repeats, and idempotent send retries."""

from __future__ import annotations

import asyncio

import pytest

from chat_client import (
    ConnectionChanged,
    ReceiptReceived,
    Resynced,
    SendRefused,
    TypingChanged,
    new_client_id,
)
from tests.client.helpers import AccountFactory, Collector, confirmed


async def test_two_clients_chat_in_real_time(accounts: AccountFactory) -> None:
    alice, bob = await asyncio.gather(accounts.new(), accounts.new())
    chat = await alice.client.create_direct(bob.id)
    async with alice.client.connect() as alice_session, bob.client.connect() as bob_session:
        alice_sees, bob_sees = Collector(alice_session), Collector(bob_session)
        await asyncio.wait_for(
            asyncio.gather(alice_session.wait_connected(), bob_session.wait_connected()), 10
        )
        assert alice_session.user_id == alice.id

        sent = [await confirmed(alice_session, chat.id, f"hi {i}") for i in range(3)]
        assert [s.seq for s in sent] == [1, 2, 3]
        await bob_sees.wait_for_seq(chat.id, 3)
        assert [(m.seq, m.body, m.sender_id) for m in bob_sees.messages] == [
            (1, "hi 0", alice.id),
            (2, "hi 1", alice.id),
            (3, "hi 2", alice.id),
        ]
        assert bob_sees.messages[0].id == sent[0].message_id

        reply = await confirmed(bob_session, chat.id, "hello alice")
        await alice_sees.wait_for_seq(chat.id, reply.seq)
        assert alice_sees.messages[-1].body == "hello alice"

        await bob_session.typing(chat.id, True)
        await alice_sees.wait_until(
            lambda: any(
                isinstance(e, TypingChanged) and e.user_id == bob.id and e.active
                for e in alice_sees.events
            ),
            "bob's typing indicator",
        )
        await bob_session.mark_read(chat.id, 4)
        await alice_sees.wait_until(
            lambda: any(
                isinstance(e, ReceiptReceived) and e.user_id == bob.id and e.seq == 4
                for e in alice_sees.events
            ),
            "bob's read receipt",
        )
        with pytest.raises(SendRefused) as refused:
            await confirmed(alice_session, chat.id, "   ")
        assert refused.value.code == "invalid"
        await alice_sees.stop()
        await bob_sees.stop()
    assert (await bob.client.conversation(chat.id)).unread_count == 0


async def test_dropped_socket_resumes_by_cursor_without_loss_or_repeats(
    accounts: AccountFactory,
) -> None:
    alice, bob = await asyncio.gather(accounts.new(), accounts.new())
    chat = await alice.client.create_direct(bob.id)
    async with alice.client.connect() as alice_session, bob.client.connect() as bob_session:
        bob_sees = Collector(bob_session)
        await asyncio.wait_for(bob_session.wait_connected(), 10)
        for i in range(2):
            await confirmed(alice_session, chat.id, f"before {i}")
        await bob_sees.wait_for_seq(chat.id, 2)

        socket = bob_session.websocket
        assert socket is not None
        socket.transport.abort()  # the network vanishes under bob
        # Alice keeps talking and bob types while his socket is gone.
        away = [alice_session.send(chat.id, f"away {i}") for i in range(5)]
        bob_reply = bob_session.send(chat.id, "sent while reconnecting")
        results = await asyncio.wait_for(asyncio.gather(*away, bob_reply), 20)
        assert sorted(r.seq for r in results) == list(range(3, 9))

        await bob_sees.wait_for_seq(chat.id, 8)
        await asyncio.sleep(0.5)  # room for any repeat to show up
        assert [m.seq for m in bob_sees.messages] == list(range(1, 9))
        changes = [e for e in bob_sees.events if isinstance(e, ConnectionChanged)]
        connected = [e for e in changes if e.state == "connected"]
        assert len(connected) == 2 and connected[1].resumed
        assert any(e.state == "disconnected" for e in changes)
        assert not bob_sees.of(Resynced), "a short gap resumes by cursor, not resync"
        await bob_sees.stop()
    history = [m async for m in alice.client.iter_messages(chat.id)]
    assert [m.seq for m in history] == list(range(1, 9))


async def test_retried_send_with_the_same_client_id_is_one_message(
    accounts: AccountFactory,
) -> None:
    alice, bob = await asyncio.gather(accounts.new(), accounts.new())
    chat = await alice.client.create_direct(bob.id)
    async with alice.client.connect() as session:
        await asyncio.wait_for(session.wait_connected(), 10)
        client_id = new_client_id()
        first = await confirmed(session, chat.id, "once", client_id=client_id)
        again = await confirmed(session, chat.id, "once", client_id=client_id)
        assert (again.message_id, again.seq) == (first.message_id, first.seq)

        # A send still unconfirmed when the socket dies is written again after the
        # reconnect. Whether or not the first copy reached the gateway, there must be
        # exactly one message in the end.
        lost_id = new_client_id()
        in_flight = asyncio.create_task(session.send(chat.id, "in flight", client_id=lost_id))
        for _ in range(3):
            await asyncio.sleep(0)  # let the write start
        socket = session.websocket
        assert socket is not None
        socket.transport.abort()
        retried = await asyncio.wait_for(in_flight, 20)
        assert retried.client_id == lost_id and retried.seq == 2
        assert session.unconfirmed_sends == 0
    history = [m async for m in bob.client.iter_messages(chat.id)]
    assert [(m.seq, m.client_id) for m in history] == [(1, client_id), (2, lost_id)]
