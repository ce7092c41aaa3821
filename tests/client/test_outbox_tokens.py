"""Unconfirmed sends and token renewal in isolation (no servers)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from chat_client import SendRefused, TokenKeeper, TokenPair, Unauthorized
from chat_client.outbox import Outbox

SENT = {
    "type": "sent",
    "conversation_id": "c",
    "message_id": "m1",
    "seq": 1,
    "created_at": "2025-01-01T00:00:00Z",
}


async def test_transient_refusals_are_retried_with_the_same_frame() -> None:
    written: list[str] = []
    outbox = Outbox(written.append)
    pending = outbox.add("k1", "c", "hello")
    throttled = {"type": "error", "code": "rate_limited", "client_id": "k1", "retry_after_ms": 20}
    assert outbox.refuse(throttled)
    await asyncio.sleep(0.1)
    assert written == [pending.frame]
    assert orjson.loads(pending.frame)["client_id"] == "k1"
    outbox.confirm({**SENT, "client_id": "k1"})
    assert (await pending.future).message_id == "m1"
    assert len(outbox) == 0


async def test_permanent_refusal_fails_the_send_and_others_are_not_touched() -> None:
    outbox = Outbox(lambda _: None)
    refused = outbox.add("k1", "c", "hello")
    other = outbox.add("k2", "c", "world")
    assert outbox.add("k1", "c", "hello") is refused  # same client_id, same send
    assert not outbox.refuse({"type": "error", "code": "invalid", "client_id": "nobody"})
    assert outbox.refuse(
        {"type": "error", "code": "not_member", "client_id": "k1", "message": "no"}
    )
    with pytest.raises(SendRefused) as error:
        await refused.future
    assert (error.value.code, error.value.client_id) == ("not_member", "k1")
    assert outbox.frames() == [other.frame]


def pair(access: str, expires_in: int = 60, age: float = 0.0) -> TokenPair:
    return TokenPair(access, f"refresh-{access}", expires_in, time.time() - age)


async def test_concurrent_refreshes_of_one_stale_token_make_one_call() -> None:
    calls: list[str] = []

    async def refresher(refresh_token: str) -> TokenPair:
        calls.append(refresh_token)
        await asyncio.sleep(0.01)
        return pair(f"new{len(calls)}")

    keeper = TokenKeeper(pair("old"))
    keeper.bind(refresher)
    results = await asyncio.gather(*(keeper.refresh(stale="old") for _ in range(5)))
    assert calls == ["refresh-old"]  # a second call would reuse a rotated token
    assert {r.access_token for r in results} == {"new1"}


async def test_a_due_token_is_renewed_and_a_refused_refresh_forgets_the_pair() -> None:
    async def refresher(refresh_token: str) -> TokenPair:
        if refresh_token == "refresh-old":
            return pair("fresh")
        raise Unauthorized(401, "family revoked")

    seen: list[TokenPair | None] = []
    keeper = TokenKeeper(pair("old", expires_in=60, age=55), refresh_margin=10)
    keeper.bind(refresher)
    keeper.subscribe(seen.append)
    assert await keeper.access_token() == "fresh"
    assert await keeper.access_token() == "fresh"  # not due again
    with pytest.raises(Unauthorized):
        await keeper.refresh()
    assert keeper.pair is None
    assert [p.access_token if p else None for p in seen] == ["fresh", None]
