"""One user flooding the gateway with each kind of frame, at the default limits, while
two others chat through the same gateway: the flooder is limited (refused, or closed
with 1008), the bystanders get every message in order, and readiness keeps answering.
Latencies go to the test's log; only the limiting and the delivery are asserted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.stack import RunningStack, User, start_stack
from tests.support.wsclient import ChatSocket

pytestmark = pytest.mark.slow

log = logging.getLogger(__name__)

# The shipped defaults (the test stack relaxes them for the other tests).
DEFAULT_LIMITS = {
    "CHAT_FRAME_RATE": "50",
    "CHAT_FRAME_BURST": "200",
    "CHAT_READ_RATE": "5",
    "CHAT_READ_BURST": "30",
    "CHAT_SEND_RATE": "20",
    "CHAT_SEND_BURST": "40",
}
FLOOD_FRAMES = 20_000
BYSTANDER_MESSAGES = 40


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("floods"), gateways=1, env=DEFAULT_LIMITS)
    yield running
    running.stack.stop()


def flood_frame(kind: str, conversation: str, n: int) -> str:
    frames: dict[str, Any] = {
        "ping": {"type": "ping"},
        "read": {"type": "read", "conversation_id": conversation, "seq": 1 + n % 2},
        "ack": {"type": "ack", "cursor": f"{1700000000000 + n}-0"},
        "typing": {"type": "typing", "conversation_id": conversation, "active": n % 2 == 0},
        "send": {
            "type": "send",
            "client_id": f"f{n}",
            "conversation_id": conversation,
            "body": "x",
        },
    }
    return json.dumps(frames[kind]) if kind in frames else '{"type": "nonsense"'


@pytest.mark.parametrize("kind", ["ping", "read", "ack", "typing", "bad", "send"])
async def test_one_flooding_user_is_limited_and_the_others_chat_on(
    stack: RunningStack, kind: str
) -> None:
    flooder, alice, bob = await stack.users(3)
    conversation = await stack.conversation(alice, [alice, bob, flooder])
    await one_message(stack, alice, conversation)  # something to mark read
    url = stack.ws_urls[0]

    refused = 0
    closed_with: int | None = None

    async def flood() -> None:
        nonlocal refused, closed_with
        headers = {"Authorization": f"Bearer {flooder.token}"}
        async with connect(url, additional_headers=headers, compression=None) as ws:

            async def drain() -> None:
                nonlocal refused
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame.get("type") == "error" and frame.get("code") == "rate_limited":
                        refused += 1

            reader = asyncio.create_task(drain())
            try:
                for n in range(FLOOD_FRAMES):
                    await ws.send(flood_frame(kind, conversation, n))
            except ConnectionClosed:
                pass
            with contextlib.suppress(asyncio.TimeoutError, ConnectionClosed):
                await asyncio.wait_for(reader, 10)
            closed_with = ws.close_code

    readiness: list[float] = []

    async def probe_readiness(stop: asyncio.Event) -> None:
        async with httpx2.AsyncClient(timeout=5) as http:
            while not stop.is_set():
                begun = time.monotonic()
                answer = await http.get(f"{stack.gateways[0].url}/readyz")
                assert answer.status_code == 200
                readiness.append(time.monotonic() - begun)
                await asyncio.sleep(0.05)

    stop = asyncio.Event()
    prober = asyncio.create_task(probe_readiness(stop))
    flooding = asyncio.create_task(flood())
    latencies = await bystanders_chat(url, alice, bob, conversation)
    await flooding
    stop.set()
    await prober

    log.warning(
        "%s flood: %d refused, closed with %s; bystander p50 %.1f ms, max %.1f ms; "
        "readiness max %.0f ms",
        kind,
        refused,
        closed_with,
        1000 * sorted(latencies)[len(latencies) // 2],
        1000 * max(latencies),
        1000 * max(readiness, default=0),
    )
    if kind in ("ack", "typing"):
        # Folded (acks) or dropped (typing), never refused: the flood costs a parse each.
        assert refused == 0
    else:
        assert refused > 0 or closed_with == 1008, "the flood was not limited"
        assert closed_with == 1008, "sustained abuse did not close the session"


async def one_message(stack: RunningStack, sender: User, conversation: str) -> None:
    socket = await ChatSocket.open(stack.ws_urls[0], sender.token, device_id="setup")
    await socket.start()
    await socket.send(type="send", client_id="first", conversation_id=conversation, body="hi")
    await socket.expect("sent")
    await socket.close()


async def bystanders_chat(url: str, alice: User, bob: User, conversation: str) -> list[float]:
    """Alice sends, Bob receives: every message, in order. Returns the latencies."""
    sender = await ChatSocket.open(url, alice.token, device_id="a")
    receiver = await ChatSocket.open(url, bob.token, device_id="b")
    await sender.start()
    await receiver.start()
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    received: list[str] = []
    for n in range(BYSTANDER_MESSAGES):
        client_id = f"by{n}"
        sent_at[client_id] = time.monotonic()
        await sender.send(type="send", client_id=client_id, conversation_id=conversation, body="b")
        await sender.expect("sent", timeout=20)
        frame = await receiver.expect(
            "message", timeout=20, where=lambda f: f["message"]["client_id"].startswith("by")
        )
        received.append(frame["message"]["client_id"])
        latencies.append(time.monotonic() - sent_at[frame["message"]["client_id"]])
        await asyncio.sleep(0.02)
    assert received == [f"by{n}" for n in range(BYSTANDER_MESSAGES)]
    await sender.close()
    await receiver.close()
    return latencies
