"""Fan-out: from the ingest shard streams into member inboxes and onto gateways.

Each shard is worked by exactly one gateway at a time, under a lease in Redis. Live
gateways share the shards evenly (each aims for ceil(shards / live gateways)); a lease
that is not renewed expires, and a survivor takes the shard within a lease period.
Every shard has one consumer name in group ``fanout`` whoever holds it, so a new holder
first re-reads what the previous one left pending, and order is kept.

For a batch of shard entries: read the members of each conversation, append the
message to every member's inbox (one script per member, pipelined), add one delivery
record per message to each gateway hosting a session of a recipient, then XACK. A crash
anywhere before the XACK redoes the batch; the inbox script's watermark makes the redo
append nothing twice.

The lease alone cannot stop two holders at once: a holder that stalled past its expiry
learns it lost the shard only at its next renewal, and a failover can lose the lease
key. The watermark is the fencing token that makes that harmless: the append script
(in the member's own slot) applies a shard entry only if its id is above the last one
applied for that shard, and entry ids only grow, so a late holder replaying older
entries writes nothing and overlapping holders leave one ordered copy
(tests/gateway/test_fanout_fence.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat_gateway.inbox import Inbox
from chat_shared.ingest import message_from_entry
from chat_shared.keys import (
    FANOUT_GROUP,
    GATEWAYS_ZSET,
    MEMBERS_SENTINEL,
    gateway_deliveries,
    members_key,
    shard_lease,
    shard_stream,
)
from chat_shared.leases import Leases
from chat_shared.scripts import ScriptCall, run_batch
from chat_shared.streams import Entry, GroupWorker
from chat_shared.tasks import stop_if_cancelled

log = logging.getLogger(__name__)

DELIVERY_STREAM_MAXLEN = 100_000


class LeaseLost(RuntimeError):
    """This gateway no longer holds the shard: it must not deliver from it."""


class MembersNotCached(RuntimeError):
    """Some conversations of the batch have no cached members (yet)."""


@dataclass
class FanoutStats:
    messages: int = 0
    inbox_appends: int = 0
    batches: int = 0
    held: set[int] = field(default_factory=set)


class Fanout:
    def __init__(
        self,
        redis: Redis,
        inbox: Inbox,
        *,
        gateway_id: str,
        shards: int,
        lease_seconds: float,
        batch: int = 200,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.redis = redis
        self.inbox = inbox
        self.gateway_id = gateway_id
        self.shards = shards
        self.lease_ms = int(lease_seconds * 1000)
        self.batch = batch
        self.on_batch = on_batch
        self.stats = FanoutStats()
        self.leases = Leases(redis)
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._valid_until: dict[int, float] = {}
        self._stopping = False

    # Leases ------------------------------------------------------------------------

    async def run(self) -> None:
        """Hold a fair share of the shard leases until stopped."""
        period = self.lease_ms / 3000
        while not self._stopping:
            stop_if_cancelled()
            try:
                await self._balance()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("fanout lease round failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(period)

    async def _balance(self) -> None:
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(GATEWAYS_ZSET, {self.gateway_id: now_ms})
            # Gateways beat every third of a lease: one silent for a lease and a beat is
            # gone, and its expired leases are shared out among the survivors.
            pipe.zcount(GATEWAYS_ZSET, now_ms - self.lease_ms * 4 // 3, "+inf")
            _, live = await pipe.execute()
        target = math.ceil(self.shards / max(1, int(live)))

        for shard in list(self._workers):
            started = time.monotonic()
            if await self.leases.renew(shard_lease(shard), self.gateway_id, self.lease_ms):
                self._valid_until[shard] = started + self.lease_ms / 1000 * 0.8
            else:
                log.warning("lost fanout lease", extra={"shard": shard})
                await self._stop_worker(shard)
        while len(self._workers) > target:
            await self.release(max(self._workers))
        if len(self._workers) < target:
            free = [s for s in range(self.shards) if s not in self._workers]
            random.shuffle(free)
            for shard in free:
                if len(self._workers) >= target:
                    break
                started = time.monotonic()
                if await self.leases.acquire(shard_lease(shard), self.gateway_id, self.lease_ms):
                    self._valid_until[shard] = started + self.lease_ms / 1000 * 0.8
                    self._workers[shard] = asyncio.create_task(self._worker(shard).run())
                    self.stats.held.add(shard)
                    log.info("took fanout lease", extra={"shard": shard})

    def _holds(self, shard: int) -> bool:
        return not self._stopping and time.monotonic() < self._valid_until.get(shard, 0.0)

    async def _stop_worker(self, shard: int) -> None:
        task = self._workers.pop(shard, None)
        self._valid_until.pop(shard, None)
        self.stats.held.discard(shard)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def release(self, shard: int) -> None:
        await self._stop_worker(shard)
        await self.leases.release(shard_lease(shard), self.gateway_id)

    async def stop(self) -> None:
        """Hand every shard over at once (graceful shutdown)."""
        self._stopping = True
        for shard in list(self._workers):
            try:
                await self.release(shard)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                await self._stop_worker(shard)
        with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
            await self.redis.zrem(GATEWAYS_ZSET, self.gateway_id)

    # Work ----------------------------------------------------------------------------

    def _worker(self, shard: int) -> GroupWorker:
        # One consumer name per shard, shared by whoever holds its lease: a new holder
        # first re-reads what the previous one left pending (the worker's recovery
        # rule), so nothing needs claiming. No dead letters: a message must reach
        # every inbox, so a batch is retried until it does.
        stream = shard_stream(shard)

        async def handle(entries: list[Entry]) -> None:
            if not self._holds(shard):
                raise LeaseLost(shard)  # the balance loop stops this worker
            await self._fan_out(shard, stream, [(e.id, e.fields) for e in entries])

        return GroupWorker(
            self.redis,
            group=FANOUT_GROUP,
            streams=[stream],
            consumer=f"s{shard}",
            handler=handle,
            batch_size=self.batch,
            block_ms=1000,
            claim_idle_ms=None,
            in_flight=1,
        )

    async def _fan_out(self, shard: int, stream: str, entries: list[Any]) -> None:
        # Entries trimmed while pending come back without fields: nothing to deliver.
        live = [(eid, fields) for eid, fields in entries if fields]
        messages = [(eid, message_from_entry(fields)) for eid, fields in live]
        conversations = sorted({m.conversation_id for _, m in messages})
        members = await self._members(conversations)
        missing = [c for c in conversations if c not in members]
        if missing:
            # Membership vanished from Redis (data loss); history rebuilds it. Wait
            # rather than skip: skipping would lose the message for every member. The
            # worker tries the same batch again after a pause.
            raise MembersNotCached(missing[:5])

        # One script call per member carries all of that member's messages in this
        # batch (in stream order): far fewer calls than one per member and message.
        payloads: list[bytes] = []
        entry_ids: list[str] = []
        by_member: dict[str, list[int]] = defaultdict(list)
        for index, (eid, message) in enumerate(messages):
            payloads.append(orjson.dumps(message.public()))
            entry_ids.append(eid.decode() if isinstance(eid, bytes) else str(eid))
            for member in members[message.conversation_id]:
                by_member[member].append(index)
        field_name = f"s{shard}"
        calls: list[ScriptCall] = []
        for member, indexes in by_member.items():
            args: list[Any] = [field_name, self.inbox.maxlen]
            for index in indexes:
                args += [entry_ids[index], payloads[index]]
            calls.append((self.inbox.append_script, self.inbox.append_keys(member), args))
        # A failed call raises: nothing is acknowledged, and the batch is done again.
        results = await run_batch(self.redis, calls)

        routes: dict[tuple[str, int], list[str]] = defaultdict(list)
        appends = 0
        for (member, indexes), result in zip(by_member.items(), results, strict=True):
            count = int(result[0])
            gateways = {_text(g) for g in result[1 : 1 + count]}
            pairs = result[1 + count :]
            for position, index in enumerate(indexes):
                cursor = _text(pairs[2 * position])
                if not cursor:
                    continue
                appends += 1
                prev = _text(pairs[2 * position + 1])
                for gateway in gateways:
                    routes[(gateway, index)].append(f"{member} {cursor} {prev}")

        async with self.redis.pipeline(transaction=False) as pipe:
            for (gateway, index), recipients in sorted(routes.items(), key=lambda r: r[0][1]):
                pipe.xadd(
                    gateway_deliveries(gateway),
                    {"m": payloads[index], "r": "\n".join(recipients)},
                    maxlen=DELIVERY_STREAM_MAXLEN,
                    approximate=True,
                )
            pipe.xack(stream, FANOUT_GROUP, *[eid for eid, _ in entries])
            await pipe.execute()
        self.stats.messages += len(messages)
        self.stats.inbox_appends += appends
        self.stats.batches += 1
        if self.on_batch is not None:
            self.on_batch(len(messages), appends)

    async def _members(self, conversations: list[str]) -> dict[str, list[str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for conversation in conversations:
                pipe.smembers(members_key(conversation, self.shards))
            replies = await pipe.execute()
        found: dict[str, list[str]] = {}
        sentinel = MEMBERS_SENTINEL.encode()
        for conversation, reply in zip(conversations, replies, strict=True):
            if reply:
                found[conversation] = sorted(m.decode() for m in reply if m != sentinel)
        return found


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
