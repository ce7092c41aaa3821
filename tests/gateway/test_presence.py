"""Presence, typing and read receipts between real sockets on real Valkey."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx2
import pytest
from redis.asyncio import Redis

from chat_shared.keys import READ_MARKERS_STREAM
from tests.gateway.conftest import GatewayFactory
from tests.support.tokens import TokenMinter
from tests.support.wsclient import ChatSocket

Members = Callable[..., Awaitable[None]]


async def no_frame_of(socket: ChatSocket, kind: str, seconds: float) -> bool:
    """True when no frame of this kind arrives for ``seconds``."""
    try:
        await socket.expect(kind, timeout=seconds)
    except TimeoutError:
        return True
    return False


async def test_online_then_offline_on_clean_close(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    gateway = await start_gateway(presence_timeout=3.0)
    await members("c1", ["alice", "bob"], kind="direct")
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"))
    await bob.start()
    started = time.monotonic()
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    await alice.start()
    online = await bob.expect("presence", timeout=1.0)
    assert online["user_id"] == "alice"
    assert online["status"] == "online"
    assert time.monotonic() - started < 1.0
    await alice.close()
    offline = await bob.expect("presence", timeout=1.0)
    assert offline["status"] == "offline"
    assert offline["last_active_at"].endswith("Z")
    await bob.close()


async def keep_alive(socket: ChatSocket, every: float = 1.0) -> None:
    while True:
        await asyncio.sleep(every)
        await socket.send(type="ping")


async def test_five_second_reconnect_causes_no_flap_and_silence_goes_offline(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    timeout = 8.0
    gateway = await start_gateway(presence_timeout=timeout)
    await members("c1", ["alice", "bob"], kind="direct")
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"))
    await bob.start()
    pinger = asyncio.create_task(keep_alive(bob))
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    await alice.start()
    await bob.expect("presence")
    # The network drops (no close frame); alice is back five seconds later.
    await alice.send(type="ping")
    alice.ws.transport.abort()  # type: ignore[attr-defined]
    await asyncio.sleep(5.0)  # the reconnect delay under test, not a synchronisation
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    await alice.start()
    assert await no_frame_of(bob, "presence", 2.0), "a quick reconnect is not a transition"
    # Now alice stays silent: closed with 4408, offline within timeout + 2 s.
    silent_since = time.monotonic() - 2.0
    assert await alice.closed_with(timeout=timeout + 2) == 4408
    offline = await bob.expect("presence", timeout=4.0)
    assert offline["user_id"] == "alice"
    assert offline["status"] == "offline"
    assert time.monotonic() - silent_since <= timeout + 2.0
    pinger.cancel()
    await bob.close()


async def test_pings_keep_a_session_alive(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    gateway = await start_gateway(presence_timeout=1.5)
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    await alice.start()
    for _ in range(6):
        await asyncio.sleep(0.5)
        await alice.send(type="ping")
        await alice.expect("pong")
    await alice.send(type="ping")
    assert (await alice.expect("pong"))["type"] == "pong"
    await alice.close()


async def test_presence_query_answers_for_contacts_only(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    gateway = await start_gateway()
    await members("c1", ["alice", "bob"], kind="direct")
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"))
    await bob.start()
    stranger = await ChatSocket.open(gateway.ws_url, minter.token("stranger"))
    await stranger.start()
    async with httpx2.AsyncClient(base_url=gateway.http_url) as http:
        headers = {"Authorization": f"Bearer {minter.token('alice')}"}
        answer = await http.get(
            "/v1/presence", params={"user_ids": "bob,stranger,nobody"}, headers=headers
        )
        assert answer.status_code == 200
        assert answer.json() == {
            "presence": [{"user_id": "bob", "status": "online", "last_active_at": None}]
        }
        too_many = ",".join(f"u{i}" for i in range(201))
        refused = await http.get("/v1/presence", params={"user_ids": too_many}, headers=headers)
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        anonymous = await http.get("/v1/presence", params={"user_ids": "bob"})
        assert anonymous.status_code == 401
    await bob.close()
    await stranger.close()


async def test_typing_reaches_online_members_only_and_is_not_stored(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members, redis: Redis
) -> None:
    gateway = await start_gateway()
    await members("g1", ["alice", "bob", "carol"])
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"))
    outsider = await ChatSocket.open(gateway.ws_url, minter.token("outsider"))
    for socket in (alice, bob, outsider):
        await socket.start()
    await alice.send(type="typing", conversation_id="g1", active=True)
    typing = await bob.expect("typing")
    assert typing == {"type": "typing", "conversation_id": "g1", "user_id": "alice", "active": True}
    assert await no_frame_of(outsider, "typing", 1.0)
    assert await no_frame_of(alice, "typing", 0.5), "the typer does not hear itself"
    keys = [k.decode() async for k in redis.scan_iter("*")]
    assert not [k for k in keys if "typing" in k]
    assert await redis.exists(READ_MARKERS_STREAM) == 0
    for socket in (alice, bob, outsider):
        await socket.close()


async def test_read_receipts_reach_members_and_the_readers_other_devices(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members, redis: Redis
) -> None:
    gateway = await start_gateway()
    await members("g1", ["alice", "bob"])
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    bob_phone = await ChatSocket.open(gateway.ws_url, minter.token("bob"), device_id="phone")
    bob_laptop = await ChatSocket.open(gateway.ws_url, minter.token("bob"), device_id="laptop")
    for socket in (alice, bob_phone, bob_laptop):
        await socket.start()
    for i in range(3):
        await alice.send(type="send", client_id=f"k{i}", conversation_id="g1", body="hi")
    await bob_phone.messages(3)
    await bob_phone.send(type="read", conversation_id="g1", seq=3)
    expected = {
        "type": "receipt",
        "conversation_id": "g1",
        "user_id": "bob",
        "seq": 3,
        "kind": "read",
    }
    assert await alice.expect("receipt") == expected
    assert await bob_laptop.expect("receipt") == expected
    entries = await redis.xrange(READ_MARKERS_STREAM)
    assert [(f[b"u"], f[b"c"], f[b"q"]) for _, f in entries] == [(b"bob", b"g1", b"3")]
    await bob_phone.send(type="read", conversation_id="g1", seq=99)
    assert (await bob_phone.expect("error"))["code"] == "invalid"
    for socket in (alice, bob_phone, bob_laptop):
        await socket.close()


@pytest.mark.parametrize("kind", ["direct", "group"])
async def test_presence_goes_to_contacts_not_strangers(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members, kind: str
) -> None:
    gateway = await start_gateway()
    await members("c1", ["alice", "bob"], kind=kind)
    stranger = await ChatSocket.open(gateway.ws_url, minter.token("stranger"))
    await stranger.start()
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    await alice.start()
    assert await no_frame_of(stranger, "presence", 1.0)
    await alice.close()
    await stranger.close()
