"""A consumer-group reader: new entries, plus entries left idle by dead consumers.

:class:`GroupWorker` owns the loop; a handler decides what each batch means and which
entries to acknowledge. Entries come back as :class:`Entry` with their delivery count,
so a handler can give up on an entry that keeps failing.

Each process reads under its own consumer name. An entry a process took and never
acknowledged (it crashed, or the handler failed) stays pending; once idle for
``claim_idle_ms`` any worker of the group claims it with XAUTOCLAIM, which counts one
more delivery. A handler therefore must be idempotent: it may see an entry twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from chat_shared.tasks import stop_if_cancelled

log = logging.getLogger(__name__)

# Back-off after a failed round (Redis or store down): retry soon, without spinning.
ERROR_BACKOFF_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Entry:
    stream: str
    id: str
    fields: dict[bytes, bytes]
    deliveries: int = 1


Handler = Callable[[list[Entry]], Awaitable[None]]


def unique_consumer_name(prefix: str = "") -> str:
    """Host, pid and a random suffix: a restarted process never reuses a dead name."""
    base = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return f"{prefix}{base}" if prefix else base


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class GroupWorker:
    def __init__(
        self,
        redis: Redis,
        *,
        group: str,
        streams: Sequence[str],
        consumer: str,
        handler: Handler,
        batch_size: int,
        block_ms: int,
        claim_idle_ms: int,
        claim_interval_seconds: float,
    ) -> None:
        self.redis = redis
        self.group = group
        self.streams = list(streams)
        self.consumer = consumer
        self.handler = handler
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.claim_interval_seconds = claim_interval_seconds

    async def ensure_groups(self) -> None:
        for stream in self.streams:
            await ensure_group(self.redis, stream, self.group)

    async def run(self) -> None:
        """Work until cancelled."""
        await self.ensure_groups()
        next_claim = 0.0  # claim first: a restart picks up what its predecessor left
        while True:
            stop_if_cancelled()
            try:
                if time.monotonic() >= next_claim:
                    await self.claim_idle()
                    next_claim = time.monotonic() + self.claim_interval_seconds
                entries = await self.read_new()
                if entries:
                    await self.handler(entries)
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    log.exception("stream worker round failed", extra={"group": self.group})
                    await asyncio.sleep(ERROR_BACKOFF_SECONDS)
                    continue
                # Redis lost its data (or an operator deleted the group): start again.
                log.warning("consumer group missing; creating it", extra={"group": self.group})
                await self.ensure_groups()
            except Exception:
                log.exception("stream worker round failed", extra={"group": self.group})
                await asyncio.sleep(ERROR_BACKOFF_SECONDS)

    async def read_new(self) -> list[Entry]:
        reply = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            streams=dict.fromkeys(self.streams, ">"),
            count=self.batch_size,
            block=self.block_ms,
        )
        entries: list[Entry] = []
        for stream, items in reply or []:
            name = _text(stream)
            for entry_id, fields in items:
                entries.append(Entry(name, _text(entry_id), fields or {}))
        return entries

    async def claim_idle(self) -> int:
        """Claim and handle every entry idle too long in this group; returns how many."""
        handled = 0
        for stream in self.streams:
            start = "0-0"
            # Bounded: each call moves the cursor forward; stop when it wraps to 0-0.
            for _ in range(1000):
                reply = await self.redis.xautoclaim(
                    stream,
                    self.group,
                    self.consumer,
                    min_idle_time=self.claim_idle_ms,
                    start_id=start,
                    count=self.batch_size,
                )
                start = _text(reply[0])
                claimed = [(_text(i), f) for i, f in reply[1] if i is not None]
                if claimed:
                    entries = await self._with_deliveries(stream, claimed)
                    handled += len(entries)
                    await self.handler(entries)
                if start == "0-0":
                    break
        return handled

    async def _with_deliveries(
        self, stream: str, claimed: list[tuple[str, dict[bytes, bytes] | None]]
    ) -> list[Entry]:
        ids = {entry_id for entry_id, _ in claimed}
        counts: dict[str, int] = {}
        rows = await self.redis.xpending_range(
            stream,
            self.group,
            min=claimed[0][0],
            max=claimed[-1][0],
            count=len(claimed) * 4 + 100,
            consumername=self.consumer,
        )
        for row in rows:
            entry_id = _text(row["message_id"])
            if entry_id in ids:
                counts[entry_id] = int(row["times_delivered"])
        return [
            Entry(stream, entry_id, fields or {}, counts.get(entry_id, 1))
            for entry_id, fields in claimed
        ]

    async def forget_idle_consumers(self, idle_ms: int) -> int:
        """Remove consumer names that hold nothing and were idle longer than ``idle_ms``
        (every restart adds a name; dead ones would pile up). Returns how many."""
        removed = 0
        for stream in self.streams:
            try:
                consumers = await self.redis.xinfo_consumers(stream, self.group)
            except ResponseError:  # no stream or no group yet
                continue
            for consumer in consumers:
                name = _text(consumer["name"])
                if (
                    name != self.consumer
                    and not consumer["pending"]
                    and (int(consumer["idle"]) > idle_ms)
                ):
                    await self.redis.xgroup_delconsumer(stream, self.group, name)
                    removed += 1
        return removed

    async def ack(self, entries: Sequence[Entry]) -> None:
        by_stream: dict[str, list[str]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.id)
        if not by_stream:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            await pipe.execute()
