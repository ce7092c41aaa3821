"""Rate limits and connection caps answer with the documented frames and codes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx2
import pytest
from redis.asyncio import Redis
from websockets.exceptions import ConnectionClosed

from chat_shared.keys import READ_MARKERS_STREAM, ingest_shard_for, shard_stream, user_cursors
from tests.gateway.conftest import SHARDS, GatewayFactory
from tests.support.tokens import TokenMinter
from tests.support.waiting import eventually
from tests.support.wsclient import ChatSocket

Members = Callable[..., Awaitable[None]]


async def test_sends_over_the_rate_get_rate_limited_then_hammering_closes_1008(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    gateway = await start_gateway(send_rate=1.0, send_burst=2)
    await members("c1", ["alice", "bob"])
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    await alice.start()
    for i in range(3):
        await alice.send(type="send", client_id=f"k{i}", conversation_id="c1", body="hi")
    replies = [await alice.recv() for _ in range(3)]
    assert sorted(r["seq"] for r in replies if r["type"] == "sent") == [1, 2]
    (limited,) = [r for r in replies if r["type"] == "error"]
    assert limited["code"] == "rate_limited"
    assert limited["client_id"] == "k2"
    assert limited["retry_after_ms"] > 0
    for i in range(400):
        try:
            await alice.send(type="send", client_id=f"h{i}", conversation_id="c1", body="hi")
        except Exception:
            break
    assert await alice.closed_with() == 1008


async def test_connections_per_user_are_capped(
    start_gateway: GatewayFactory, minter: TokenMinter
) -> None:
    gateway = await start_gateway(max_connections_per_user=2)
    token = minter.token("alice")
    first = await ChatSocket.open(gateway.ws_url, token)
    await first.start()
    second = await ChatSocket.open(gateway.ws_url, token)
    await second.start()
    third = await ChatSocket.open(gateway.ws_url, token)
    assert await third.closed_with() == 4429
    await first.close()
    await second.close()


async def test_connections_per_address_are_capped(
    start_gateway: GatewayFactory, minter: TokenMinter
) -> None:
    gateway = await start_gateway(max_connections_per_ip=2)
    sockets = [await ChatSocket.open(gateway.ws_url, minter.token(f"u{i}")) for i in range(2)]
    for socket in sockets:
        await socket.start()
    extra = await ChatSocket.open(gateway.ws_url, minter.token("u9"))
    assert await extra.closed_with() == 4429
    for socket in sockets:
        await socket.close()


async def test_invalid_device_id_is_refused(
    start_gateway: GatewayFactory, minter: TokenMinter
) -> None:
    gateway = await start_gateway()
    socket = await ChatSocket.open(gateway.ws_url, minter.token("u1"), device_id="a%20b")
    assert await socket.closed_with() == 1008


async def test_the_send_limit_is_per_user_over_every_socket_and_gateway(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    """Three devices on two gateways share one budget of three sends (the burst)."""
    first = await start_gateway(send_rate=0.1, send_burst=3)
    second = await start_gateway(send_rate=0.1, send_burst=3)
    await members("c1", ["alice", "bob"])
    token = minter.token("alice")
    sockets = [
        await ChatSocket.open(url, token, device_id=f"d{i}")
        for i, url in enumerate([first.ws_url, second.ws_url, first.ws_url])
    ]
    for socket in sockets:
        await socket.start()
    for i, socket in enumerate(sockets):
        for n in range(3):
            await socket.send(type="send", client_id=f"s{i}-{n}", conversation_id="c1", body="hi")
    replies = [await _answer(socket) for socket in sockets for _ in range(3)]
    accepted = [r for r in replies if r["type"] == "sent"]
    refused = [r for r in replies if r["type"] == "error"]
    assert len(accepted) == 3
    assert len(refused) == 6
    assert {r["code"] for r in refused} == {"rate_limited"}
    assert all(r["retry_after_ms"] > 0 for r in refused)
    for socket in sockets:
        await socket.close()


async def _answer(socket: ChatSocket) -> dict[str, object]:
    """The next `sent` or `error` frame (skipping the messages of the others)."""
    while True:
        frame = await socket.recv()
        if frame["type"] in ("sent", "error"):
            return frame


async def test_a_read_at_or_below_the_marker_sends_nothing(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members, redis: Redis
) -> None:
    gateway = await start_gateway()
    await members("c1", ["alice", "bob"])
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"))
    await alice.start()
    await bob.start()
    for n in range(3):
        await alice.send(type="send", client_id=f"k{n}", conversation_id="c1", body="hi")
        await alice.expect("sent")
    await bob.messages(3)

    await bob.send(type="read", conversation_id="c1", seq=2)
    first = await alice.expect("receipt")
    assert (first["user_id"], first["seq"]) == ("bob", 2)
    for seq in (2, 1, 2, 1):  # repeats and older markers: no receipt, no stream entry
        await bob.send(type="read", conversation_id="c1", seq=seq)
    await bob.send(type="read", conversation_id="c1", seq=3)
    second = await alice.expect("receipt")
    assert second["seq"] == 3, "a receipt for a read that changed nothing went out"
    assert await redis.xlen(READ_MARKERS_STREAM) == 2
    await alice.close()
    await bob.close()


async def test_a_ping_flood_is_limited_then_closed_1008_and_others_are_unaffected(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    gateway = await start_gateway(frame_rate=5.0, frame_burst=10)
    await members("c1", ["alice", "bob"])
    flooder = await ChatSocket.open(gateway.ws_url, minter.token("mallory"))
    await flooder.start()
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"))
    await alice.start()
    await bob.start()

    for _ in range(20):
        await flooder.send(type="ping")
    answers = [await flooder.recv() for _ in range(20)]
    assert [a["type"] for a in answers].count("pong") == 10
    limited = [a for a in answers if a["type"] == "error"]
    assert {a["code"] for a in limited} == {"rate_limited"}
    assert all(a["retry_after_ms"] > 0 for a in limited)
    for _ in range(400):
        try:
            await flooder.send(type="ping")
        except Exception:
            break
    assert await flooder.closed_with() == 1008

    await alice.send(type="send", client_id="after", conversation_id="c1", body="still here")
    await alice.expect("sent")
    (message,) = await bob.messages(1)
    assert message["message"]["client_id"] == "after"
    await alice.close()
    await bob.close()


async def test_acks_over_the_frame_budget_are_folded_not_refused(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members, redis: Redis
) -> None:
    gateway = await start_gateway(frame_rate=1.0, frame_burst=2)
    await members("c1", ["alice", "bob"])
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"), device_id="phone")
    await alice.start()
    await bob.start()
    for n in range(6):
        await alice.send(type="send", client_id=f"k{n}", conversation_id="c1", body="hi")
    cursors = [m["cursor"] for m in await bob.messages(6)]
    for cursor in cursors:
        await bob.send(type="ack", cursor=cursor)
    # Sends have their own budget: the next frame bob gets is its `sent`, no error.
    await bob.send(type="send", client_id="b1", conversation_id="c1", body="ok")
    assert (await bob.recv())["type"] == "sent", "an ack was answered with an error"

    async def newest_stored() -> bool:
        return await redis.hget(user_cursors("bob"), "phone") == cursors[-1].encode()

    await eventually(newest_stored, "the newest ack stored by the next tick")
    await alice.close()
    await bob.close()


async def test_a_session_closed_for_abuse_first_answers_every_stored_send(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members, redis: Redis
) -> None:
    gateway = await start_gateway(send_rate=5.0, send_burst=50)
    await members("c1", ["alice", "bob"])
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    await alice.start()
    for i in range(400):  # far past the 200 refusals that end the session
        try:
            await alice.send(type="send", client_id=f"f{i}", conversation_id="c1", body="x")
        except ConnectionClosed:
            break
    acked: set[str] = set()

    async def read_until_closed() -> None:
        while True:
            frame = await alice.recv()
            if frame["type"] == "sent":
                acked.add(frame["client_id"])

    with pytest.raises(ConnectionClosed) as closed:
        await read_until_closed()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    stream = shard_stream(ingest_shard_for("c1", SHARDS))
    stored = {fields[b"k"].decode() for _, fields in await redis.xrange(stream)}
    assert len(stored) >= 50
    assert acked == stored, "a stored message was never acknowledged"


async def test_reads_in_quick_succession_send_one_receipt(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members, redis: Redis
) -> None:
    gateway = await start_gateway(receipt_tick_seconds=2.0)  # long: five reads fit in it
    await members("c1", ["alice", "bob"])
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"))
    await alice.start()
    await bob.start()
    for n in range(5):
        await alice.send(type="send", client_id=f"k{n}", conversation_id="c1", body="hi")
        await alice.expect("sent")
    await bob.messages(5)
    for seq in range(1, 6):  # scrolling down: five markers within one tick
        await bob.send(type="read", conversation_id="c1", seq=seq)
    receipt = await alice.expect("receipt")
    assert receipt["seq"] == 5, "the members got a receipt per read, not the newest"
    await bob.send(type="ping")  # anything queued after the tick would come first
    await alice.send(type="ping")
    assert (await alice.recv())["type"] == "pong", "a second receipt followed"
    # History got the newest marker (reads handled at once may overtake each other;
    # the older ones then change nothing and are not streamed).
    streamed = [int(f[b"q"]) for _, f in await redis.xrange(READ_MARKERS_STREAM)]
    assert max(streamed) == 5  # history keeps the highest it is given
    await alice.close()
    await bob.close()


async def test_closes_are_counted_by_code_and_refusals_by_a_short_reason(
    start_gateway: GatewayFactory, minter: TokenMinter
) -> None:
    gateway = await start_gateway(max_connections_per_user=1)
    first = await ChatSocket.open(gateway.ws_url, minter.token("zed"))
    await first.start()
    second = await ChatSocket.open(gateway.ws_url, minter.token("zed"))
    assert await second.closed_with() == 4429
    await first.close()
    metrics = ""
    async with httpx2.AsyncClient(base_url=gateway.http_url) as http:

        async def counted() -> bool:
            nonlocal metrics
            metrics = (await http.get("/metrics")).text
            return 'chat_gateway_session_closes_total{code="1000"}' in metrics

        await eventually(counted, "the normal close counted")
    assert 'chat_gateway_rejected_handshakes_total{reason="user_cap"} 1.0' in metrics
