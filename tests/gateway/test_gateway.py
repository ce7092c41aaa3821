"""The gateway on real sockets and a real Valkey (in-process uvicorn, minted tokens)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx2
import jsonschema
import pytest
from websockets.exceptions import InvalidStatus

from tests.gateway.conftest import GatewayFactory
from tests.support.tokens import TokenMinter
from tests.support.wsclient import ChatSocket

Members = Callable[..., Awaitable[None]]


async def test_missing_or_bad_token_closes_4401(
    start_gateway: GatewayFactory, minter: TokenMinter
) -> None:
    gateway = await start_gateway()
    for token in (None, "garbage", minter.token("u1", exp=int(time.time()) - 60)):
        socket = await ChatSocket.open(gateway.ws_url, token)
        assert await socket.closed_with() == 4401
    forged = TokenMinter(kid=minter.kid).token("u1")
    socket = await ChatSocket.open(gateway.ws_url, forged, subprotocol=True)
    assert socket.ws.subprotocol == "chat.v1"
    assert await socket.closed_with() == 4401


async def test_token_by_header_subprotocol_or_query(
    start_gateway: GatewayFactory, minter: TokenMinter
) -> None:
    gateway = await start_gateway()
    token = minter.token("u1")
    by_header = await ChatSocket.open(gateway.ws_url, token)
    assert (await by_header.start())["user_id"] == "u1"
    by_subprotocol = await ChatSocket.open(gateway.ws_url, token, subprotocol=True)
    assert by_subprotocol.ws.subprotocol == "chat.v1", "only chat.v1 is echoed"
    assert (await by_subprotocol.start())["user_id"] == "u1"
    by_query = await ChatSocket.open(f"{gateway.ws_url}?access_token={token}")
    hello = await by_query.start()
    assert hello["heartbeat_interval_ms"] == 5000
    for socket in (by_header, by_subprotocol, by_query):
        await socket.close()


async def test_send_reaches_every_device_of_every_member_once(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    gateway = await start_gateway()
    await members("c1", ["alice", "bob"])
    alice_phone = await ChatSocket.open(gateway.ws_url, minter.token("alice"), device_id="ph")
    alice_laptop = await ChatSocket.open(gateway.ws_url, minter.token("alice"), device_id="lp")
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"))
    for socket in (alice_phone, alice_laptop, bob):
        await socket.start()

    for i in range(5):
        await alice_phone.send(
            type="send", client_id=f"k{i}", conversation_id="c1", body=f"hello {i}"
        )
    acks = [await alice_phone.expect("sent") for _ in range(5)]
    assert sorted(a["seq"] for a in acks) == [1, 2, 3, 4, 5]
    for socket in (alice_phone, alice_laptop, bob):
        received = await socket.messages(5)
        assert [m["message"]["seq"] for m in received] == [1, 2, 3, 4, 5]
        assert [m["message"]["body"] for m in received] == [f"hello {i}" for i in range(5)]
        assert all(m["message"]["sender_id"] == "alice" for m in received)
    # A retry with the same client_id answers the original and delivers nothing new.
    await alice_phone.send(type="send", client_id="k0", conversation_id="c1", body="again")
    retry = await alice_phone.expect("sent")
    assert retry["seq"] == 1
    assert retry["message_id"] == next(a for a in acks if a["client_id"] == "k0")["message_id"]
    for socket in (alice_phone, alice_laptop, bob):
        await socket.close()


async def test_non_members_cannot_send_read_or_type(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    gateway = await start_gateway()
    await members("c1", ["alice", "bob"])
    mallory = await ChatSocket.open(gateway.ws_url, minter.token("mallory"))
    await mallory.start()
    await mallory.send(type="send", client_id="x", conversation_id="c1", body="hi")
    error = await mallory.expect("error")
    assert error["code"] == "not_member"
    assert error["client_id"] == "x"
    await mallory.send(type="read", conversation_id="c1", seq=1)
    assert (await mallory.expect("error"))["code"] == "not_member"
    await mallory.send(type="typing", conversation_id="c1", active=True)
    assert (await mallory.expect("error"))["code"] == "not_member"
    await mallory.send(type="ping")
    assert (await mallory.expect("pong"))["type"] == "pong", "the connection stays open"
    await mallory.close()


async def test_reconnect_with_cursor_replays_the_gap_without_duplicates(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    gateway = await start_gateway()
    await members("c1", ["alice", "bob"])
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"), device_id="b1")
    await bob.start()
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    await alice.start()
    await alice.send(type="send", client_id="k0", conversation_id="c1", body="first")
    (first,) = await bob.messages(1)
    await bob.close()
    for i in range(1, 301):
        await alice.send(type="send", client_id=f"k{i}", conversation_id="c1", body=f"m{i}")
    for _ in range(300):
        await alice.expect("sent")

    bob = await ChatSocket.open(
        gateway.ws_url, minter.token("bob"), device_id="b1", cursor=first["cursor"]
    )
    hello = await bob.start()
    assert hello["cursor"] == first["cursor"]
    replay = await bob.messages(300)
    assert [m["message"]["seq"] for m in replay] == list(range(2, 302))
    await alice.send(type="send", client_id="live", conversation_id="c1", body="live")
    (live,) = await bob.messages(1)
    assert live["message"]["seq"] == 302
    # The stored cursor serves when the client gives none.
    await bob.send(type="ack", cursor=replay[99]["cursor"])
    await bob.send(type="ping")
    await bob.expect("pong")
    await bob.close()
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"), device_id="b1")
    await bob.start()
    again = await bob.messages(201)
    assert [m["message"]["seq"] for m in again] == list(range(102, 303))
    for socket in (alice, bob):
        await socket.close()


async def test_cursor_older_than_the_inbox_gets_resync(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    gateway = await start_gateway(inbox_maxlen=10)
    await members("c1", ["alice", "bob"])
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    await alice.start()
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"))
    await bob.start()
    await alice.send(type="send", client_id="k0", conversation_id="c1", body="first")
    (first,) = await bob.messages(1)
    await bob.close()
    for i in range(1, 400):
        await alice.send(type="send", client_id=f"k{i}", conversation_id="c1", body="x")
        await alice.expect("sent")
    # Alice's own socket gets every message too: once seq 400 is there, the fan-out
    # has filled (and trimmed) Bob's inbox.
    await alice.expect("message", where=lambda f: f["message"]["seq"] == 400)
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"), cursor=first["cursor"])
    await bob.start()
    resync = await bob.expect("resync")
    assert resync["reason"] == "cursor_too_old"
    await alice.send(type="send", client_id="after", conversation_id="c1", body="after")
    live = await bob.expect("message")
    assert live["message"]["seq"] == 401
    for socket in (alice, bob):
        await socket.close()


async def test_frame_over_the_size_limit_closes_1009(
    start_gateway: GatewayFactory, minter: TokenMinter
) -> None:
    gateway = await start_gateway(max_frame_bytes=4096)
    socket = await ChatSocket.open(gateway.ws_url, minter.token("u1"))
    await socket.start()
    await socket.send(type="send", client_id="k", conversation_id="c1", body="x" * 5000)
    assert await socket.closed_with() == 1009


async def test_browser_origins_are_checked(
    start_gateway: GatewayFactory, minter: TokenMinter
) -> None:
    gateway = await start_gateway(allowed_origins=["https://chat.example"])
    token = minter.token("u1")
    ok = await ChatSocket.open(gateway.ws_url, token, origin="https://chat.example")
    await ok.start()
    same_host = await ChatSocket.open(
        gateway.ws_url, token, origin=f"http://127.0.0.1:{gateway.port}"
    )
    await same_host.start()
    with pytest.raises(InvalidStatus) as refused:
        await ChatSocket.open(gateway.ws_url, token, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    await ok.close()
    await same_host.close()


async def test_asyncapi_document_is_valid_asyncapi_3(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    async with httpx2.AsyncClient() as http:
        document = (await http.get(f"{gateway.http_url}/asyncapi.json")).json()
        openapi = (await http.get(f"{gateway.http_url}/openapi.json")).json()
    schema = json.loads((Path(__file__).parent / "asyncapi-3.0.0.schema.json").read_text())
    jsonschema.validate(document, schema)
    assert document["channels"]["session"]["address"] == "/v1/ws"
    names = {m["name"] for m in document["components"]["messages"].values()}
    assert {
        "send",
        "ack",
        "read",
        "typing",
        "ping",
        "hello",
        "sent",
        "message",
        "receipt",
        "presence",
        "resync",
        "pong",
        "error",
    } <= names
    assert "/v1/presence" in openapi["paths"]


async def test_many_concurrent_senders_keep_one_order(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    gateway = await start_gateway()
    users = [f"u{i}" for i in range(10)]
    await members("room", users)
    sockets = [await ChatSocket.open(gateway.ws_url, minter.token(u)) for u in users]
    for socket in sockets:
        await socket.start()

    async def burst(index: int, socket: ChatSocket) -> None:
        for n in range(20):
            await socket.send(
                type="send", client_id=f"{index}-{n}", conversation_id="room", body=f"{index}:{n}"
            )

    await asyncio.gather(*(burst(i, s) for i, s in enumerate(sockets)))
    for socket in sockets:
        received = await socket.messages(200, timeout=30)
        assert [m["message"]["seq"] for m in received] == list(range(1, 201))
    for socket in sockets:
        await socket.close()


async def test_a_cursor_acked_just_before_a_clean_close_is_kept(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    gateway = await start_gateway()
    await members("c1", ["alice", "bob"])
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    await alice.start()
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"), device_id="bd")
    await bob.start()
    for i in range(3):
        await alice.send(type="send", client_id=f"k{i}", conversation_id="c1", body=f"m{i}")
    received = await bob.messages(3)
    await bob.send(type="ack", cursor=received[1]["cursor"])
    await bob.close()
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"), device_id="bd")
    hello = await bob.start()
    assert hello["cursor"] == received[1]["cursor"]
    (replayed,) = await bob.messages(1)
    assert replayed["message"]["seq"] == 3
    await alice.close()
    await bob.close()
