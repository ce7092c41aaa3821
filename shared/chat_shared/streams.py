"""The one consumer-group worker: every stream consumer of every service runs on it.

A :class:`GroupWorker` reads a set of streams in one consumer group under one consumer
name, and hands batches of :class:`Entry` to a handler, which acknowledges what it has
durably done (``worker.ack``) or raises to leave the batch pending. Invariants:

- Each stream is read on its own (one reader task per stream, a few batches handled at
  once): no command spans two streams, so the streams may live in different slots of
  a Redis Cluster.
- One recovery rule: at start and after any failed round, a reader first re-reads its
  own pending entries (id ``0``), since the work may have happened while the
  acknowledgement did not; then it reads new ones (``>``).
- Entries a dead consumer took and never acknowledged are claimed (XAUTOCLAIM) once
  idle for ``claim_idle_ms``, at start and then every ``claim_interval_seconds``
  (unless claiming is off: a consumer whose name is fenced by a lease re-reads its
  own pending instead).
- An entry delivered more than ``dead_letters.after`` times moves to the dead-letter
  stream with the last failure noted for it, and is acknowledged: one poison entry
  never blocks the ones behind it. Without ``dead_letters`` an entry is retried until
  it succeeds (for work that must never be skipped).
- A handler that raises gets the same batch again after a pause (an outage is not a
  delivery); an entry it leaves unacknowledged without raising is read again.
- A handler may see an entry more than once, so it must be idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from chat_shared.tasks import stop_if_cancelled

log = logging.getLogger(__name__)

# Back-off after a failed round (Redis or store down): retry soon, without spinning.
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
# XAUTOCLAIM walks the pending list in pages; this bounds one walk.
MAX_CLAIM_PAGES = 1000
# Failures remembered for dead-letter records; entries finished elsewhere leave stale
# ones, so the memory starts afresh past this.
MAX_NOTED_FAILURES = 10_000
MAX_FAILURE_CHARS = 500


@dataclass(frozen=True, slots=True)
class Entry:
    stream: str
    id: str
    fields: dict[bytes, bytes]  # empty when the entry was trimmed while pending
    deliveries: int = 1


Handler = Callable[[list[Entry]], Awaitable[None]]


@dataclass(frozen=True)
class DeadLetters:
    stream: str
    after: int  # deliveries an entry may fail before it is moved there


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
        claim_idle_ms: int | None,
        claim_interval_seconds: float = 5.0,
        dead_letters: DeadLetters | None = None,
        on_dead_letter: Callable[[int], None] | None = None,
        in_flight: int = 4,
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
        self.dead_letters = dead_letters
        self.on_dead_letter = on_dead_letter
        self._in_flight = asyncio.Semaphore(in_flight)
        self._failures: dict[str, str] = {}

    async def ensure_groups(self) -> None:
        for stream in self.streams:
            await ensure_group(self.redis, stream, self.group)

    async def run(self) -> None:
        """Work until cancelled: one reader per stream."""
        async with asyncio.TaskGroup() as readers:
            for stream in self.streams:
                readers.create_task(self.run_stream(stream), name=f"{self.group}:{stream}")

    async def run_stream(self, stream: str) -> None:
        loop = asyncio.get_running_loop()
        own_pending = True
        next_claim = 0.0  # claim at once: a predecessor may have died mid-batch
        backoff = FIRST_BACKOFF_SECONDS
        group_ready = False
        while True:
            stop_if_cancelled()
            try:
                if not group_ready:
                    await ensure_group(self.redis, stream, self.group)
                    group_ready = True
                if self.claim_idle_ms is not None and loop.time() >= next_claim:
                    await self.claim_idle(stream)
                    next_claim = loop.time() + self.claim_interval_seconds
                entries = await self.read(stream, "0" if own_pending else ">")
                # Own pending entries are read until none is left: an entry the
                # handler did not acknowledge is read again (one delivery more each
                # time, so a poison entry reaches the dead-letter limit).
                own_pending = own_pending and bool(entries)
                if entries:
                    await self.handle(entries)
                backoff = FIRST_BACKOFF_SECONDS
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # Redis lost its data (or an operator deleted the group): again.
                    log.warning("consumer group missing; creating it", extra=self._where(stream))
                    group_ready = False
                else:
                    log.exception("stream round failed", extra=self._where(stream))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                own_pending = True
            except Exception as exc:
                log.warning(
                    "stream round failed",
                    extra={**self._where(stream), "error": type(exc).__name__},
                    exc_info=not isinstance(exc, OSError | ConnectionError),
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                own_pending = True

    def _where(self, stream: str) -> dict[str, str]:
        return {"group": self.group, "stream": stream}

    async def read(self, stream: str, from_id: str) -> list[Entry]:
        """One batch: our own pending entries (``0``) or new ones (``>``)."""
        reply = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            streams={stream: from_id},
            count=self.batch_size,
            block=None if from_id == "0" else self.block_ms,
        )
        items = [(_text(i), f) for _, entries in reply or [] for i, f in entries]
        if from_id == "0" and items:
            return await self._with_deliveries(stream, items)
        return [Entry(stream, entry_id, fields or {}) for entry_id, fields in items]

    async def handle(self, entries: list[Entry]) -> None:
        """Hand a batch to the handler until it has been through once without raising.

        A handler raises only when nothing can be done now (the store or Redis is
        away): the same batch is tried again after a pause, without reading it again,
        so an outage does not count as deliveries and never dead-letters anything. An
        entry the handler could not do on its own it leaves unacknowledged (noting
        why): it is read again, and dead-lettered once over the limit."""
        limit = self.dead_letters.after if self.dead_letters else None
        exhausted = [e for e in entries if limit is not None and e.deliveries > limit]
        if exhausted:
            await self.dead_letter(exhausted)
        rest = [e for e in entries if limit is None or e.deliveries <= limit]
        backoff = FIRST_BACKOFF_SECONDS
        while rest:
            stop_if_cancelled()
            try:
                async with self._in_flight:
                    await self.handler(rest)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "batch not handled; retrying it",
                    extra={"group": self.group, "entries": len(rest), "error": type(exc).__name__},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def claim_idle(self, stream: str) -> int:
        """Claim and handle every entry of ``stream`` idle too long in this group;
        returns how many."""
        assert self.claim_idle_ms is not None
        handled = 0
        start = "0-0"
        for _ in range(MAX_CLAIM_PAGES):  # each call moves on; 0-0 means wrapped
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
                await self.handle(entries)
            if start == "0-0":
                break
        return handled

    async def _with_deliveries(
        self, stream: str, items: list[tuple[str, dict[bytes, bytes] | None]]
    ) -> list[Entry]:
        ids = {entry_id for entry_id, _ in items}
        counts: dict[str, int] = {}
        rows = await self.redis.xpending_range(
            stream,
            self.group,
            min=items[0][0],
            max=items[-1][0],
            count=len(items) * 4 + 100,
            consumername=self.consumer,
        )
        for row in rows:
            entry_id = _text(row["message_id"])
            if entry_id in ids:
                counts[entry_id] = int(row["times_delivered"])
        return [
            Entry(stream, entry_id, fields or {}, counts.get(entry_id, 1))
            for entry_id, fields in items
        ]

    # What handlers call -------------------------------------------------------------

    async def ack(self, entries: Sequence[Entry]) -> None:
        by_stream: dict[str, list[str]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.id)
            self._failures.pop(entry.id, None)
        for stream, ids in by_stream.items():
            await self.redis.xack(stream, self.group, *ids)

    def note_failure(self, entry: Entry, failure: str) -> None:
        """Remember why an entry failed: its dead-letter record will say so. Texts
        must name fields and causes, never message bodies."""
        if len(self._failures) >= MAX_NOTED_FAILURES:
            self._failures.clear()
        self._failures[entry.id] = failure[:MAX_FAILURE_CHARS]

    async def dead_letter(self, entries: Sequence[Entry]) -> None:
        """Move entries to the dead-letter stream, then acknowledge them. The record
        carries the original fields (``f:<name>``), so an operator can replay it."""
        if self.dead_letters is None:
            raise RuntimeError(f"group {self.group} has no dead-letter stream")
        for entry in entries:
            failure = self._failures.pop(
                entry.id, f"not handled after {entry.deliveries - 1} deliveries"
            )
            record: dict[bytes | str, bytes | str | int] = {
                "_stream": entry.stream,
                "_id": entry.id,
                "_group": self.group,
                "_deliveries": max(entry.deliveries - 1, 1),
                "_error": failure,
            }
            for key, value in entry.fields.items():
                record[b"f:" + key] = value
            await self.redis.xadd(self.dead_letters.stream, record)
            await self.redis.xack(entry.stream, self.group, entry.id)
            log.error(
                "entry moved to the dead-letter stream",
                extra={"stream": entry.stream, "entry_id": entry.id, "error": failure},
            )
        if self.on_dead_letter is not None:
            self.on_dead_letter(len(entries))

    # Housekeeping ---------------------------------------------------------------------

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
                if name != self.consumer and not consumer["pending"] and consumer["idle"] > idle_ms:
                    await self.redis.xgroup_delconsumer(stream, self.group, name)
                    removed += 1
        return removed

    async def retire(self) -> None:
        """Leave the group on a clean stop, on every stream where this consumer holds
        nothing (what it still holds waits for another process to claim)."""
        for stream in self.streams:
            pending = await self.redis.xpending_range(
                stream, self.group, min="-", max="+", count=1, consumername=self.consumer
            )
            if not pending:
                await self.redis.xgroup_delconsumer(stream, self.group, self.consumer)
