"""Rate limits and connection caps answer with the documented frames and codes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.gateway.conftest import GatewayFactory
from tests.support.tokens import TokenMinter
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
