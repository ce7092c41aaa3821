"""``--mode history``: how long one history page takes to read, per store engine.

For each engine, a fresh stack (history on SQLite, or on a local Cassandra node at
LOCAL_QUORUM) holds one conversation of ``--messages`` messages, all persisted (the
``history`` consumer group has nothing pending) before the clock starts. Then one
client reads ``--page-reads`` pages of ``--page-limit`` messages, one after the other,
each ending at a random seq: the latency of a page as a reader scrolling back sees it,
through the public REST API (HTTP, token check, membership, store). Nothing else runs
meanwhile, so the figures are the read path alone, not the read path under load.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from typing import Any

import httpx2

from bench import report
from bench.stack import BenchStack
from bench.stats import latency_summary
from chat_shared.keys import HISTORY_GROUP

SENDS_AT_ONCE = 16


async def run_history_pages(args: argparse.Namespace) -> dict[str, Any]:
    engines = ["sqlite", "cassandra"] if args.store == "both" else [args.store]
    out: dict[str, Any] = {}
    for engine in engines:
        out[engine] = await measure_engine(engine, args)
    if len(engines) == 2:
        out["p99_cassandra_over_sqlite"] = _ratio(
            out["cassandra"]["p99_ms"], out["sqlite"]["p99_ms"]
        )
    return {"history_pages": out}


async def measure_engine(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {"CHAT_STORE": engine}
    if engine == "cassandra":
        env["CHAT_CASSANDRA_KEYSPACE"] = f"bench_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    stack = await asyncio.to_thread(BenchStack(gateways=0, env=env).start)
    report.progress(f"{engine}: stack up in {time.monotonic() - started:.1f}s")
    try:
        owner, peer = await stack.users(2)
        (conversation,) = await stack.conversations([(owner, [peer])])
        await _fill(stack, owner.token, conversation.id, args.messages)
        await _wait_persisted(stack)
        report.progress(f"{engine}: {args.messages} messages stored; reading pages")
        seconds = await _read_pages(stack, peer.token, conversation.id, args)
    finally:
        await asyncio.to_thread(stack.stop)
    return {
        "messages": args.messages,
        "page_reads": len(seconds),
        "page_limit": args.page_limit,
        **latency_summary(seconds),
    }


async def _fill(stack: BenchStack, token: str, conversation_id: str, count: int) -> None:
    limit = asyncio.Semaphore(SENDS_AT_ONCE)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(base_url=stack.history_url, timeout=60) as http:

        async def send(n: int) -> None:
            async with limit:
                answer = await http.post(
                    f"/v1/conversations/{conversation_id}/messages",
                    json={"body": f"message {n} " + "x" * 80, "client_id": f"fill-{n}"},
                    headers=headers,
                )
            if answer.status_code != 201:
                raise RuntimeError(f"send failed: {answer.status_code} {answer.text[:200]}")

        await asyncio.gather(*(send(n) for n in range(count)))


PERSIST_WAIT_SECONDS = 120.0


async def _wait_persisted(stack: BenchStack) -> None:
    deadline = time.monotonic() + PERSIST_WAIT_SECONDS
    while True:
        lag = (await stack.stream_lag())[HISTORY_GROUP]
        if lag["pending"] == 0 and lag["unread"] == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"history did not persist everything: {lag}")
        await asyncio.sleep(0.2)


async def _read_pages(
    stack: BenchStack, token: str, conversation_id: str, args: argparse.Namespace
) -> list[float]:
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {token}"}
    seconds: list[float] = []
    async with httpx2.AsyncClient(base_url=stack.history_url, timeout=30) as http:
        for _ in range(args.page_reads):
            before = rng.randint(args.page_limit + 1, args.messages + 1)
            begun = time.perf_counter()
            answer = await http.get(
                f"/v1/conversations/{conversation_id}/messages",
                params={"before_seq": before, "limit": args.page_limit},
                headers=headers,
            )
            seconds.append(time.perf_counter() - begun)
            messages = answer.json()["messages"]
            if answer.status_code != 200 or len(messages) != args.page_limit:
                raise RuntimeError(f"bad page before {before}: {answer.status_code}")
    return seconds


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else round(value / base, 2)
