"""A full Redis says no, and loses nothing it said yes to.

Valkey runs with a small ``maxmemory`` and ``noeviction``, as every local and production
server does. Large messages fill it: sends are then refused with `unavailable` (never
acknowledged and dropped). When an operator gives it more memory, everything that was
acknowledged reaches history and every member, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio

from tests.support.stack import start_stack
from tests.support.waiting import eventually
from tests.support.wsclient import ChatSocket

pytestmark = pytest.mark.slow

BODY = "m" * 20_000
MAX_SENDS = 400


async def test_sends_are_refused_when_redis_is_full_and_nothing_acknowledged_is_lost(
    tmp_path: Path,
) -> None:
    running = await asyncio.to_thread(
        start_stack, tmp_path, gateways=1, env={"CHAT_EMBEDDED_REDIS_MAXMEMORY": "8mb"}
    )
    try:
        alice, bob, carol = await running.users(3)
        conversation = await running.conversation(alice, [alice, bob, carol])
        sender = await ChatSocket.open(running.ws_urls[0], alice.token, device_id="a")
        reader = await ChatSocket.open(running.ws_urls[0], bob.token, device_id="b")
        await sender.start()
        await reader.start()

        acked: list[str] = []
        refused = 0
        for n in range(MAX_SENDS):
            await sender.send(
                type="send", client_id=f"m{n}", conversation_id=conversation, body=BODY
            )
            while True:
                frame = await sender.recv(timeout=20)
                if frame["type"] in ("sent", "error"):
                    break
            if frame["type"] == "sent":
                acked.append(frame["client_id"])
            else:
                assert frame["code"] == "unavailable", frame
                refused += 1
                if refused >= 3:
                    break
        assert refused >= 3, "Redis never filled up"
        assert acked, "nothing was accepted before Redis filled up"

        valkey = running.stack.valkey
        assert valkey is not None
        admin = redis.asyncio.Redis.from_url(valkey.url)
        try:
            await admin.config_set("maxmemory", "1gb")  # the operator adds memory
        finally:
            await admin.aclose()

        async def all_stored() -> bool:
            stored = await running.history(alice, conversation)
            return [m["client_id"] for m in stored] == acked

        await eventually(all_stored, "every acknowledged message in history", timeout=60)
        stored = await running.history(alice, conversation)
        assert [m["seq"] for m in stored] == list(range(1, len(acked) + 1))
        assert all(m["body"] == BODY for m in stored)
        delivered = []
        while len(delivered) < len(acked):
            frame = await reader.expect("message", timeout=30)
            delivered.append(frame["message"]["client_id"])
        assert delivered == acked
        await sender.close()
        await reader.close()
    finally:
        running.stack.stop()
