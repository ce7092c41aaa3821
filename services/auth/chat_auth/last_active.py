"""Users' last activity, made durable: auth records what the gateways' presence sees.

When a user's last device goes offline, a gateway appends ``u`` (user id) and ``t``
(epoch milliseconds) to ``LAST_ACTIVE_STREAM``. Every auth process reads that stream
in the ``auth`` consumer group under its own consumer name, records each batch with
``record_last_active`` and acknowledges the batch only after the write. Recording only
moves a time forward, so handling an entry twice is harmless, and entries are replayed
rather than lost:

- after a failed round, the consumer re-reads its own pending entries (id ``0``)
  before new ones: the write may have happened while the acknowledgement did not;
- entries a crashed process took and never acknowledged are taken over (XAUTOCLAIM)
  once idle for ``claim_idle_seconds``, by any auth process, at its start and then
  twice per that period.

A malformed entry is logged, acknowledged and skipped, so it never blocks later ones.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat_shared.ids import is_id
from chat_shared.keys import LAST_ACTIVE_STREAM
from chat_shared.ports.auth import UserStore
from chat_shared.tasks import stop_if_cancelled

log = logging.getLogger(__name__)

GROUP = "auth"
# Below the client's socket timeout, and short enough that a stop is never held up.
BLOCK_MS = 5000
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
# A time this far ahead of our clock is a broken writer's, not a user's: stored, it
# would pin last_active_at until the clock caught up with it.
MAX_AHEAD = timedelta(hours=1)
RETIRE_TIMEOUT_SECONDS = 2.0
# XAUTOCLAIM walks the group's pending list in pages; this bounds one walk.
MAX_CLAIM_PAGES = 1000

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
StreamEntry = tuple[Any, dict[bytes, bytes] | None]


class MalformedEntry(ValueError):
    """An entry that cannot be a last-activity record; the reason is the message."""


def unique_consumer_name() -> str:
    """Host, pid and a random suffix: a restarted process never reuses a dead name."""
    return f"auth-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def parse_entry(fields: dict[bytes, bytes] | None, *, now: datetime) -> tuple[str, datetime]:
    """``(user id, last active time)`` of one stream entry, or :class:`MalformedEntry`."""
    if not fields:
        # Entries trimmed off the stream while pending come back without fields.
        raise MalformedEntry("entry has no fields")
    raw_user, raw_time = fields.get(b"u"), fields.get(b"t")
    if raw_user is None or raw_time is None:
        raise MalformedEntry("entry lacks u or t")
    user_id = raw_user.decode("utf-8", "replace")
    if not is_id(user_id):
        raise MalformedEntry("u is not a user id")
    try:
        ms = int(raw_time)
    except ValueError:
        raise MalformedEntry("t is not an integer") from None
    if ms <= 0:
        raise MalformedEntry("t is not after the epoch")
    if ms > (now + MAX_AHEAD - EPOCH) // timedelta(milliseconds=1):
        raise MalformedEntry("t is in the future")
    return user_id, EPOCH + timedelta(milliseconds=ms)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _log_failure(exc: Exception) -> None:
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
        log.warning("last-active round failed", extra={"error": type(exc).__name__})
    else:
        log.exception("last-active round failed")


class LastActiveConsumer:
    def __init__(
        self,
        redis: Redis,
        users: UserStore,
        *,
        batch_size: int,
        claim_idle_seconds: float,
        entries_total: Counter,
        consumer: str | None = None,
    ) -> None:
        self.redis = redis
        self.users = users
        self.batch_size = batch_size
        self.claim_idle_ms = int(claim_idle_seconds * 1000)
        # Twice per idle period: an abandoned entry waits at most 1.5 periods.
        self.claim_interval_seconds = claim_idle_seconds / 2
        # Labelled by outcome: "recorded" (handed to the store) or "skipped" (malformed).
        self.entries_total = entries_total
        self.consumer = consumer or unique_consumer_name()

    async def run(self) -> None:
        """Consume until cancelled; a failed round is logged and retried after a pause."""
        backoff = FIRST_BACKOFF_SECONDS
        group_ready = False
        own_pending_first = True
        next_claim = 0.0  # claim at once: a predecessor may have crashed mid-batch
        while True:
            stop_if_cancelled()
            try:
                if not group_ready:
                    await self.ensure_group()
                    group_ready = True
                if time.monotonic() >= next_claim:
                    await self.claim_idle()
                    next_claim = time.monotonic() + self.claim_interval_seconds
                if own_pending_first:
                    own_pending_first = await self.consume("0") > 0
                else:
                    await self.consume(">")
                backoff = FIRST_BACKOFF_SECONDS
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    # Redis lost its data, or someone deleted the group: create it again.
                    log.warning("last-active consumer group missing; creating it")
                    group_ready = False
                    continue
                _log_failure(exc)
                # Redis or the store is away: retry without spinning, own pending first.
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                own_pending_first = True

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(LAST_ACTIVE_STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def consume(self, from_id: str) -> int:
        """Read one batch (``"0"``: own pending entries; ``">"``: new ones), record it
        and acknowledge it. Returns how many entries the batch held."""
        stop_if_cancelled()
        reply = await self.redis.xreadgroup(
            GROUP,
            self.consumer,
            {LAST_ACTIVE_STREAM: from_id},
            count=self.batch_size,
            block=None if from_id == "0" else BLOCK_MS,
        )
        entries: list[StreamEntry] = reply[0][1] if reply else []
        await self.record(entries)
        return len(entries)

    async def claim_idle(self) -> int:
        """Take over and record entries idle too long with other consumers; returns how
        many were taken."""
        taken = 0
        start = "0-0"
        for _ in range(MAX_CLAIM_PAGES):
            reply = await self.redis.xautoclaim(
                LAST_ACTIVE_STREAM,
                GROUP,
                self.consumer,
                min_idle_time=self.claim_idle_ms,
                start_id=start,
                count=self.batch_size,
            )
            start = _text(reply[0])
            claimed: list[StreamEntry] = [entry for entry in reply[1] if entry[0] is not None]
            if claimed:
                log.info("last-active entries taken over", extra={"count": len(claimed)})
                await self.record(claimed)
                taken += len(claimed)
            if start == "0-0":
                break
        return taken

    async def record(self, entries: Sequence[StreamEntry]) -> None:
        if not entries:
            return
        now = datetime.now(UTC)
        activity: list[tuple[str, datetime]] = []
        for entry_id, fields in entries:
            try:
                activity.append(parse_entry(fields, now=now))
            except MalformedEntry as exc:
                log.warning(
                    "malformed last-active entry skipped",
                    extra={"entry_id": _text(entry_id), "reason": str(exc)},
                )
        if activity:
            await self.users.record_last_active(activity)
        await self.redis.xack(LAST_ACTIVE_STREAM, GROUP, *(entry_id for entry_id, _ in entries))
        self.entries_total.labels("recorded").inc(len(activity))
        self.entries_total.labels("skipped").inc(len(entries) - len(activity))

    async def retire(self) -> None:
        """Leave the group on a clean stop, unless entries are still pending with this
        consumer (then they wait for another process to take them over)."""
        try:
            async with asyncio.timeout(RETIRE_TIMEOUT_SECONDS):
                pending = await self.redis.xpending_range(
                    LAST_ACTIVE_STREAM,
                    GROUP,
                    min="-",
                    max="+",
                    count=1,
                    consumername=self.consumer,
                )
                if not pending:
                    await self.redis.xgroup_delconsumer(LAST_ACTIVE_STREAM, GROUP, self.consumer)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("last-active consumer not retired", extra={"error": type(exc).__name__})
