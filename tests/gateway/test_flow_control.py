"""Flow control on real sockets: a slow reader lags and catches up from its inbox; only
a reader that takes nothing for the stall limit is closed (1013), and it resumes
without loss; a fast reader is never closed, even with every core busy."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.gateway.conftest import GatewayFactory, RunningGateway
from tests.support.tokens import TokenMinter
from tests.support.wsclient import ChatSocket

Members = Callable[..., Awaitable[None]]

BURST = 200
BODY = "x" * 60_000  # big bodies: a few frames fill the socket buffers
# A queue far smaller than the burst, in frames and in bytes: flow control must act.
SMALL_QUEUE = {"send_queue_frames": 50, "send_queue_bytes": 512 * 1024}
STALL_SECONDS = 1.5


async def burst(sender: ChatSocket, count: int = BURST) -> None:
    for i in range(count):
        await sender.send(type="send", client_id=f"k{i}", conversation_id="c1", body=BODY)


def seqs(frames: list[dict[str, object]]) -> list[object]:
    return [frame["message"]["seq"] for frame in frames]  # type: ignore[index]


async def open_three(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members, **settings: object
) -> tuple[RunningGateway, ChatSocket, ChatSocket, ChatSocket]:
    gateway = await start_gateway(**SMALL_QUEUE, max_message_chars=60_000, **settings)
    await members("c1", ["alice", "bob", "carol"])
    # Alice sends and Carol reads, both taking every frame off the socket at once
    # (no client-side queue bound); Bob is the reader the tests slow down.
    alice = await ChatSocket.open(gateway.ws_url, minter.token("alice"), max_queue=None)
    carol = await ChatSocket.open(gateway.ws_url, minter.token("carol"), max_queue=None)
    bob = await ChatSocket.open(
        gateway.ws_url, minter.token("bob"), device_id="slow", max_size=2**24
    )
    for socket in (alice, carol, bob):
        await socket.start()
    return gateway, alice, carol, bob


async def burst_while_bob_is_paused(alice: ChatSocket, carol: ChatSocket, bob: ChatSocket) -> None:
    bob.ws.transport.pause_reading()  # type: ignore[attr-defined]
    carol_reads = asyncio.create_task(carol.messages(BURST, timeout=60))
    await burst(alice)
    assert seqs(await carol_reads) == list(range(1, BURST + 1)), "Carol is never held up"


async def test_a_reader_paused_under_a_burst_catches_up_without_a_close(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    _, alice, carol, bob = await open_three(start_gateway, minter, members)
    await burst_while_bob_is_paused(alice, carol, bob)
    await asyncio.sleep(10)  # Bob stays away for a while, as a phone in a tunnel
    bob.ws.transport.resume_reading()  # type: ignore[attr-defined]
    assert seqs(await bob.messages(BURST, timeout=60)) == list(range(1, BURST + 1))
    assert bob.ws.close_code is None, "a slow but live reader is never dropped"
    for socket in (alice, bob, carol):
        await socket.close()


async def test_a_stalled_reader_is_closed_1013_and_resumes_without_loss(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    gateway, alice, carol, bob = await open_three(
        start_gateway, minter, members, stalled_reader_seconds=STALL_SECONDS
    )
    await burst_while_bob_is_paused(alice, carol, bob)
    await asyncio.sleep(STALL_SECONDS * 2)  # Bob stays away past the stall limit

    bob.ws.transport.resume_reading()  # type: ignore[attr-defined]
    got = []
    try:
        while True:
            frame = await bob.recv(timeout=20)
            if frame["type"] == "message":
                got.append(frame)
    except Exception:
        pass
    assert bob.ws.close_code == 1013, "nothing was taken for the stall limit"
    resume_from = got[-1]["cursor"] if got else bob.hello["cursor"]
    again = await ChatSocket.open(
        gateway.ws_url, minter.token("bob"), device_id="slow", cursor=resume_from
    )
    await again.start()
    rest = await again.messages(BURST - len(got), timeout=60)
    assert seqs(got + rest) == list(range(1, BURST + 1))
    for socket in (alice, again, carol):
        await socket.close()


@pytest.fixture
def busy_cores() -> AsyncIterator[None]:
    """Two processes burning a core each (bounded: they die with the test)."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield None  # type: ignore[misc]
    for burner in burners:
        burner.kill()
        burner.wait()


@pytest.mark.usefixtures("busy_cores")
async def test_a_fast_reader_is_never_closed_with_the_cores_busy(
    start_gateway: GatewayFactory, minter: TokenMinter, members: Members
) -> None:
    _, alice, carol, bob = await open_three(start_gateway, minter, members)
    readers = [asyncio.create_task(s.messages(BURST, timeout=90)) for s in (carol, bob)]
    await burst(alice)
    for reader in readers:
        assert seqs(await reader) == list(range(1, BURST + 1))
    assert carol.ws.close_code is None and bob.ws.close_code is None
    for socket in (alice, bob, carol):
        await socket.close()
