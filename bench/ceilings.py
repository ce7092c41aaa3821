"""Bare ceilings measured in the same run, on the same machine, with the same clients.

* ``relay``: the bare relay of :mod:`bench.relay`, rooms of two, driven by the same
  ``websockets`` client the devices use, from as many processes as the chat load;
  deliveries per second with a window of unacknowledged frames per socket.
* ``room fan-out``: the same with rooms of ten, every frame to every member.
* ``redis``: what one Python process gets from the stack's own Valkey: pipelined XADD
  (x100, 208-byte entries), then XREADGROUP + XACK in batches of 100.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.queues
import queue
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.load import raise_open_file_limit
from bench.stack import cpu_seconds
from bench.stats import latency_summary, rate
from chat_shared.loopback import free_port
from chat_shared.redis import connect_redis
from chat_shared.settings import ChatSettings


@dataclass(frozen=True)
class RelayLoad:
    url: str
    rooms: int
    room_size: int
    to_all: bool
    window: int
    seconds: float
    prefix: str
    body_chars: int = 100


class RelayServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RelayServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.relay", "--port", str(self.port)],
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return self
            time.sleep(0.05)
        self.__exit__()
        raise TimeoutError("the bare relay did not start")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


async def _drive(load: RelayLoad) -> dict[str, Any]:
    sockets: list[ClientConnection] = []
    for room in range(load.rooms):
        for _ in range(load.room_size):
            query = f"?room={load.prefix}{room}" + ("&to=all" if load.to_all else "")
            sockets.append(
                await connect(
                    load.url + query, compression=None, max_size=2**24, ping_interval=None
                )
            )
    slots = [asyncio.Semaphore(load.window) for _ in sockets]
    padding = "x" * load.body_chars
    counted = {"in_window": 0, "open": False}
    latencies: list[float] = []

    async def reader(ws: ClientConnection, me: int) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for text in ws:
                sender, _, sent_at = str(text).partition("|")
                now = time.monotonic()
                if counted["open"]:
                    counted["in_window"] += 1  # every frame the server wrote
                if int(sender) != me:
                    latencies.append(now - float(sent_at.partition("|")[0]))
                # The window refills when the frame arrived: at the peer (relay), or
                # back at the sender itself (fan-out to all).
                if load.to_all and int(sender) == me:
                    slots[me].release()
                elif not load.to_all:
                    slots[int(sender)].release()

    async def writer(ws: ClientConnection, me: int, deadline: float) -> int:
        sent = 0
        with contextlib.suppress(ConnectionClosed):
            while time.monotonic() < deadline:
                await slots[me].acquire()
                await ws.send(f"{me}|{time.monotonic():.6f}|{padding}")
                sent += 1
        return sent

    readers = [asyncio.create_task(reader(ws, i)) for i, ws in enumerate(sockets)]
    counted["open"] = True
    begun = time.monotonic()
    sends = await asyncio.gather(
        *(writer(ws, i, begun + load.seconds) for i, ws in enumerate(sockets))
    )
    elapsed = time.monotonic() - begun
    counted["open"] = False
    await asyncio.sleep(0.5)
    for ws in sockets:
        await ws.close()
    for task in readers:
        task.cancel()
    return {
        "seconds": elapsed,
        "sent": sum(sends),
        "delivered_in_window": counted["in_window"],
        "latencies": latencies,
    }


def _relay_worker(load: RelayLoad, answers: multiprocessing.queues.Queue[dict[str, Any]]) -> None:
    raise_open_file_limit()
    answers.put(uvloop.run(_drive(load)))


def measure_relay(
    *,
    processes: int,
    rooms_per_process: int,
    room_size: int,
    to_all: bool,
    window: int,
    seconds: float,
) -> dict[str, Any]:
    """Deliveries per second through a fresh bare relay, from several client processes."""
    context = multiprocessing.get_context("spawn")
    answers: multiprocessing.queues.Queue[dict[str, Any]] = context.Queue()
    with RelayServer() as server:
        workers = [
            context.Process(
                target=_relay_worker,
                args=(
                    RelayLoad(
                        server.url,
                        rooms_per_process,
                        room_size,
                        to_all,
                        window,
                        seconds,
                        f"p{index}-",
                    ),
                    answers,
                ),
                daemon=True,
            )
            for index in range(processes)
        ]
        assert server.process is not None
        cpu_before, clock_before = cpu_seconds(server.process.pid), time.monotonic()
        for worker in workers:
            worker.start()
        results: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds + 60
        while len(results) < processes and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                results.append(answers.get(timeout=0.5))
            if any(w.exitcode not in (None, 0) for w in workers):
                raise RuntimeError("a bare relay client process failed")
        server_cpu = cpu_seconds(server.process.pid) - cpu_before
        server_cores = server_cpu / max(1e-6, time.monotonic() - clock_before)
        for worker in workers:
            worker.join(10)
    if len(results) < processes:
        raise TimeoutError("bare relay clients did not report")
    elapsed = max(r["seconds"] for r in results)
    delivered = sum(r["delivered_in_window"] for r in results)
    return {
        "connections": processes * rooms_per_process * room_size,
        "room_size": room_size,
        "to": "all" if to_all else "others",
        "window": window,
        "seconds": round(elapsed, 2),
        "deliveries_per_s": rate(delivered, elapsed),
        # Its CPU over the whole measurement (connecting too): a machine shared with
        # other work slows it down, and this shows by how much.
        "server_cores": round(server_cores, 2),
        "deliveries_per_server_cpu_s": rate(delivered, server_cores * elapsed),
        **latency_summary([x for r in results for x in r["latencies"]]),
    }


async def measure_redis(target: ChatSettings | str, seconds: float = 2.0) -> dict[str, Any]:
    """Pipelined XADD, then XREADGROUP + XACK, on a scratch stream of the stack's Redis
    (one stream: on a cluster, one primary's figure)."""
    redis = connect_redis(target)
    stream, group = "bench:ceiling", "bench"
    payload = {"b": "x" * 200, "c": "c1"}  # ~208 bytes of fields
    try:
        await redis.delete(stream)
        added = 0
        begun = time.monotonic()
        while time.monotonic() - begun < seconds:
            async with redis.pipeline(transaction=False) as pipe:
                for _ in range(100):
                    pipe.xadd(stream, payload)
                await pipe.execute()
            added += 100
        xadd_elapsed = time.monotonic() - begun
        await redis.xgroup_create(stream, group, id="0")
        consumed = 0
        begun = time.monotonic()
        while consumed < added:
            reply = await redis.xreadgroup(group, "c", {stream: ">"}, count=100)
            ids = [entry_id for entry_id, _ in (reply[0][1] if reply else [])]
            if not ids:
                break
            await redis.xack(stream, group, *ids)
            consumed += len(ids)
        read_elapsed = time.monotonic() - begun
        return {
            "xadd_pipelined_per_s": rate(added, xadd_elapsed),
            "xreadgroup_xack_per_s": rate(consumed, read_elapsed),
        }
    finally:
        await redis.delete(stream)
        await redis.aclose()
