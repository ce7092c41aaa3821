"""``--mode memory``: what one group message costs Valkey, in bytes.

A fresh stack (one Valkey, one gateway doing the fan-out) and one group of
``--group-members`` members. ``--memory-messages`` messages of ``--body-chars``
characters are posted to it; once the fan-out and history have both caught up, the
growth of Valkey's ``used_memory`` is divided by the messages sent, and broken down by
``MEMORY USAGE`` of the members' inboxes and of the shard streams.

The target (the abuse-limits issue) is at most twice the body plus 200 bytes per
member: one copy of the body, and a small entry per member. An inbox that holds a copy
of every body per member costs about ``members x body`` instead.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx2

from bench import report
from bench.stack import BenchStack
from chat_shared.keys import FANOUT_GROUP, HISTORY_GROUP, shard_stream, user_inbox
from chat_shared.redis import connect_redis

SENDS_AT_ONCE = 8
CATCH_UP_SECONDS = 180.0
PER_MEMBER_TARGET_BYTES = 200


async def run_memory(args: argparse.Namespace) -> dict[str, Any]:
    stack = await asyncio.to_thread(BenchStack(gateways=1).start)
    try:
        users = await stack.users(args.group_members, prefix="m")
        (group,) = await stack.conversations([(users[0], users)])
        redis = connect_redis(stack.stack.settings())
        try:
            await _post(stack, users[0].token, group.id, 1, "warm-up", args.body_chars)
            await _caught_up(stack)
            before = await _used_memory(redis)
            report.progress(
                f"{args.memory_messages} messages of {args.body_chars} characters to "
                f"{len(users)} members"
            )
            await _post(stack, users[0].token, group.id, args.memory_messages, "m", args.body_chars)
            await _caught_up(stack)
            grown = await _used_memory(redis) - before
            inboxes = sum([int(await redis.memory_usage(user_inbox(u.id)) or 0) for u in users])
            shards = int(stack.stack.extra_env.get("CHAT_INGEST_SHARDS", "16"))
            streams = sum(
                [int(await redis.memory_usage(shard_stream(n)) or 0) for n in range(shards)]
            )
        finally:
            await redis.aclose()
    finally:
        await asyncio.to_thread(stack.stop)
    messages, members, body = args.memory_messages + 1, len(users), args.body_chars
    per_message = grown / args.memory_messages
    target = 2 * body + PER_MEMBER_TARGET_BYTES * members
    return {
        "memory": {
            "members": members,
            "messages": args.memory_messages,
            "body_chars": body,
            "valkey_bytes_per_message": round(per_message),
            "inbox_bytes_per_member_per_message": round(inboxes / (messages * members)),
            "shard_stream_bytes_per_message": round(streams / messages),
            "target_bytes_per_message": target,
            "ratio_to_target": round(per_message / target, 2),
        },
        "targets": {
            "valkey bytes per group message <= 2x body + 200 B/member": per_message <= target
        },
    }


async def _post(
    stack: BenchStack, token: str, conversation_id: str, count: int, tag: str, chars: int
) -> None:
    limit = asyncio.Semaphore(SENDS_AT_ONCE)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(base_url=stack.history_url, timeout=60) as http:

        async def send(n: int) -> None:
            async with limit:
                answer = await http.post(
                    f"/v1/conversations/{conversation_id}/messages",
                    json={"body": "b" * chars, "client_id": f"{tag}-{n}"},
                    headers=headers,
                )
            if answer.status_code != 201:
                raise RuntimeError(f"send failed: {answer.status_code} {answer.text[:200]}")

        await asyncio.gather(*(send(n) for n in range(count)))


async def _caught_up(stack: BenchStack) -> None:
    """Until both groups have nothing pending or unread on any shard."""
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while True:
        lag = await stack.stream_lag()
        if all(lag[g]["pending"] + lag[g]["unread"] == 0 for g in (HISTORY_GROUP, FANOUT_GROUP)):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the consumers did not catch up: {lag}")
        await asyncio.sleep(0.2)


async def _used_memory(redis: Any) -> int:
    return int((await redis.info("memory"))["used_memory"])
