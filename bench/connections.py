"""``--mode connections``: idle authenticated sockets on one gateway, and its RSS per socket.

Generator processes open WebSocket sessions (token in the Authorization header, a
``hello`` frame received = authenticated and registered) until the target count or the
time bound, reporting progress; the controller samples the gateway's RSS along the way.
The per-connection figure is the slope of RSS against connections between the first and
the last sample, which leaves out the fixed cost of the first sockets (buffers, caches).
Sockets send nothing: the stack runs with a long presence timeout so that idle sessions
are not closed for missing heartbeats during the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import multiprocessing.queues
import queue
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import uvloop
from websockets.asyncio.client import ClientConnection, connect

from bench import report
from bench.load import raise_open_file_limit
from bench.profile import Profiler
from bench.stack import BenchStack, BenchUser

DEVICES_PER_USER = 100
HANDSHAKES_AT_ONCE = 64
PROGRESS_EVERY = 250


@dataclass(frozen=True)
class Opener:
    index: int
    url: str
    tokens: list[str]
    count: int
    seconds: float


async def _open(
    job: Opener,
    answers: multiprocessing.queues.Queue[dict[str, Any]],
    commands: multiprocessing.queues.Queue[str],
) -> None:
    limit = raise_open_file_limit()
    sockets: list[ClientConnection] = []
    failures: Counter[str] = Counter()
    gate = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    deadline = time.monotonic() + job.seconds

    async def one(number: int) -> None:
        if time.monotonic() > deadline or failures.total() > 100:
            return
        token = job.tokens[number % len(job.tokens)]
        async with gate:
            try:
                ws = await connect(
                    f"{job.url}?device_id=w{job.index}c{number}",
                    additional_headers={"Authorization": f"Bearer {token}"},
                    compression=None,
                    ping_interval=None,
                    open_timeout=30,
                )
                await asyncio.wait_for(ws.recv(), 30)  # hello: authenticated, registered
            except Exception as exc:
                failures[type(exc).__name__ + ": " + str(exc)[:80]] += 1
                return
        sockets.append(ws)
        if len(sockets) % PROGRESS_EVERY == 0:
            answers.put({"worker": job.index, "open": len(sockets)})

    await asyncio.gather(*(one(n) for n in range(job.count)))
    answers.put(
        {"worker": job.index, "done": len(sockets), "failures": dict(failures), "nofile": limit}
    )
    await asyncio.to_thread(commands.get)  # hold the sockets until told to close
    for ws in sockets:
        with contextlib.suppress(Exception):
            await ws.close()


def _opener_main(
    job: Opener,
    answers: multiprocessing.queues.Queue[dict[str, Any]],
    commands: multiprocessing.queues.Queue[str],
) -> None:
    uvloop.run(_open(job, answers, commands))


async def run_connections(args: argparse.Namespace) -> dict[str, Any]:
    stack = BenchStack(gateways=1, env={"CHAT_PRESENCE_TIMEOUT": "3600"}).start()
    context = multiprocessing.get_context("spawn")
    answers: multiprocessing.queues.Queue[dict[str, Any]] = context.Queue()
    commands: list[multiprocessing.queues.Queue[str]] = []
    processes = []
    try:
        users: list[BenchUser] = await stack.users(max(1, -(-args.connections // DEVICES_PER_USER)))
        url = stack.ws_urls[0]
        gateway = stack.gateway_procs[0]
        assert gateway.process is not None
        samples = [(0, stack.gateway_rss_kib()[0])]
        share = -(-args.connections // args.workers)
        for index in range(args.workers):
            tokens = [u.token for u in users[index :: args.workers]] or [users[0].token]
            job = Opener(index, url, tokens, share, args.connect_seconds)
            commands.append(context.Queue())
            processes.append(
                context.Process(target=_opener_main, args=(job, answers, commands[-1]), daemon=True)
            )
        report.progress(f"opening {share * args.workers} idle connections on one gateway")
        profiler = None
        if args.profile:
            profiler = Profiler(gateway.process.pid, min(20.0, args.connect_seconds)).start()
        begun = time.monotonic()
        for process in processes:
            process.start()
        opened: dict[int, int] = {}
        done: dict[int, dict[str, Any]] = {}
        next_sample = 1000
        while len(done) < len(processes):
            if time.monotonic() - begun > args.connect_seconds + 60:
                break
            with contextlib.suppress(queue.Empty):
                answer = answers.get(timeout=0.5)
                if "done" in answer:
                    done[answer["worker"]] = answer
                    opened[answer["worker"]] = answer["done"]
                else:
                    opened[answer["worker"]] = answer["open"]
            total = sum(opened.values())
            if total >= next_sample:
                samples.append((total, stack.gateway_rss_kib()[0]))
                next_sample = (total // 1000 + 1) * 1000
        elapsed = time.monotonic() - begun
        await asyncio.sleep(3)  # let the gateway settle (tasks started, buffers filled)
        total = sum(opened.values())
        samples.append((total, stack.gateway_rss_kib()[0]))
        failures: Counter[str] = Counter()
        for answer in done.values():
            failures.update(answer["failures"])
        profile = profiler.wait() if profiler is not None else None
        first, last = samples[1] if len(samples) > 2 else samples[0], samples[-1]
        slope = (last[1] - first[1]) / max(1, last[0] - first[0])
        return {
            "connections": total,
            "target_connections": args.connections,
            "connect_seconds": round(elapsed, 1),
            "handshakes_per_s": round(total / elapsed, 1) if elapsed else None,
            "gateway_rss_kib_samples": samples,
            "gateway_rss_per_conn_kb": round(slope * 1.024, 1),
            "gateway_rss_per_conn_kb_incl_fixed": round(
                (last[1] - samples[0][1]) * 1.024 / max(1, total), 1
            ),
            "open_file_limit": min((a["nofile"] for a in done.values()), default=None),
            "failures": dict(failures.most_common(5)),
            "targets": {"<= 40 KB RSS per idle connection": slope * 1.024 <= 40},
            "profile": profile,
        }
    finally:
        for commands_queue in commands:
            commands_queue.put("close")
        for process in processes:
            if process.pid is None:
                continue  # never started
            process.join(30)
            if process.is_alive():
                process.terminate()
        stack.stop()
