"""Random frames at a live gateway: nothing crashes, non-fatal frames keep the session,
and a normal client on the same gateway is unaffected."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from tests.gateway.conftest import GatewayFactory
from tests.support.tokens import TokenMinter
from tests.support.wsclient import ChatSocket

Members = Callable[..., Awaitable[None]]

FRAME_TYPES = ["send", "ack", "read", "typing", "ping", "auth", "hello", "sent", "", "SEND"]
FIELDS = ["type", "client_id", "conversation_id", "body", "cursor", "seq", "active", "token"]

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
frame_object = st.fixed_dictionaries({}, optional={name: json_value for name in FIELDS}).flatmap(
    lambda d: (
        st.sampled_from(FRAME_TYPES).map(lambda t: {**d, "type": t})
        if "type" not in d
        else st.just(d)
    )
)


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


text_frames = st.one_of(
    frame_object.map(json.dumps),
    json_value.map(json.dumps),
    st.text(max_size=200),
    st.sampled_from(
        [
            deep(100),
            deep(2000),
            '{"type":"send","body":' + deep(500) + "}",
            '{"type":"read","conversation_id":"c","seq":1e400}',
            '{"type":"ping"',
            "\x00\x00",
            "{}" * 100,
        ]
    ),
)
binary_frames = st.binary(max_size=200)


async def expect_pong(socket: ChatSocket) -> None:
    await socket.send(type="ping")
    await socket.expect("pong", timeout=5)


async def test_random_frames_never_break_the_gateway(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    gateway = await start_gateway()
    await members("c1", ["fuzzer", "alice", "bob"])
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"))
    bob = await ChatSocket.open(gateway.ws_url, minter.token("bob"))
    await alice.start()
    await bob.start()
    state: dict[str, Any] = {"socket": None, "reopened": 0}

    async def fuzzer() -> ChatSocket:
        if state["socket"] is None:
            state["socket"] = await ChatSocket.open(gateway.ws_url, minter.token("fuzzer"))
            await state["socket"].start()
        return state["socket"]  # type: ignore[no-any-return]

    async def one(frame: str | bytes) -> None:
        socket = await fuzzer()
        try:
            await socket.ws.send(frame)
            await expect_pong(socket)
        except ConnectionClosed as exc:
            # Only frames the protocol itself forbids may end a session.
            code = exc.rcvd.code if exc.rcvd else None
            assert code in (1007, 1009), f"session closed with {code} by {frame[:80]!r}"
            state["socket"] = None
            state["reopened"] += 1

    loop = asyncio.get_running_loop()

    @settings(
        max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(st.one_of(text_frames, binary_frames))
    def run(frame: str | bytes) -> None:
        asyncio.run_coroutine_threadsafe(one(frame), loop).result(timeout=30)

    await asyncio.to_thread(run)

    # Invalid UTF-8 in a text frame is fatal by the WebSocket spec (1007).
    socket = await fuzzer()
    await socket.ws.send(b"\xff\xfe invalid", text=True)
    assert await socket.closed_with() == 1007

    # The bystanders still chat normally.
    await alice.send(type="send", client_id="after-fuzz", conversation_id="c1", body="still here")
    assert (await alice.expect("sent"))["client_id"] == "after-fuzz"
    message = await bob.expect("message", where=lambda f: f["message"]["client_id"] == "after-fuzz")
    assert message["message"]["body"] == "still here"
    await alice.close()
    await bob.close()
