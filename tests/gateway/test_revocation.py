"""Revoked tokens close their sockets: at once through pub/sub, and through the
periodic recheck when that notice was missed (it is fire-and-forget)."""

from __future__ import annotations

from redis.asyncio import Redis

from chat_shared.revocation import RedisRevocations, revoked_session_key, token_version_key
from tests.gateway.conftest import GatewayFactory
from tests.support.tokens import TokenMinter
from tests.support.wsclient import ChatSocket


async def test_a_logout_closes_that_sessions_sockets_only(
    start_gateway: GatewayFactory, minter: TokenMinter, redis: Redis
) -> None:
    gateway = await start_gateway()
    phone = await ChatSocket.open(gateway.ws_url, minter.token("alice", sid="S-PHONE"))
    laptop = await ChatSocket.open(gateway.ws_url, minter.token("alice", sid="S-LAPTOP"))
    await phone.start()
    await laptop.start()
    await RedisRevocations(redis).revoke_session("S-PHONE")
    assert await phone.closed_with(timeout=5) == 4401
    await laptop.send(type="ping")
    assert (await laptop.expect("pong"))["type"] == "pong"
    await laptop.close()


async def test_a_missed_notice_is_caught_by_the_recheck(
    start_gateway: GatewayFactory, minter: TokenMinter, redis: Redis
) -> None:
    gateway = await start_gateway(revocation_recheck_seconds=0.2)
    session = await ChatSocket.open(gateway.ws_url, minter.token("bob", sid="S-B"))
    versioned = await ChatSocket.open(gateway.ws_url, minter.token("carol", tv=1))
    untouched = await ChatSocket.open(gateway.ws_url, minter.token("dave", sid="S-D"))
    for socket in (session, versioned, untouched):
        await socket.start()
    # The records auth writes, without the pub/sub messages that go with them.
    await redis.set(revoked_session_key("S-B"), 1, ex=60)
    await redis.set(token_version_key("carol"), 2, ex=60)
    assert await session.closed_with(timeout=5) == 4401
    assert await versioned.closed_with(timeout=5) == 4401
    await untouched.send(type="ping")
    assert (await untouched.expect("pong"))["type"] == "pong"
    await untouched.close()
