"""Users' last activity, made durable: auth records what the gateways' presence sees.

When a user's last device goes offline, a gateway appends ``u`` (user id) and ``t``
(epoch milliseconds) to ``LAST_ACTIVE_STREAM``. Every auth process reads that stream
in the ``auth`` consumer group under its own consumer name, records each batch with
``record_last_active`` and acknowledges the batch only after the write. Recording only
moves a time forward, so handling an entry twice is harmless. The shared consumer-group
worker (``chat_shared.streams``) replays rather than loses: a failed write is tried
again, own pending entries are re-read after a failure, and entries a crashed process
took are claimed once idle for ``claim_idle_seconds`` (checked twice per period).

A malformed entry is logged, acknowledged and skipped, so it never blocks later ones.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from chat_shared.ids import is_id
from chat_shared.keys import LAST_ACTIVE_STREAM
from chat_shared.ports.auth import UserStore
from chat_shared.streams import Entry, GroupWorker, unique_consumer_name

log = logging.getLogger(__name__)

GROUP = "auth"
# Below the client's socket timeout, and short enough that a stop is never held up.
BLOCK_MS = 5000
# A time this far ahead of our clock is a broken writer's, not a user's: stored, it
# would pin last_active_at until the clock caught up with it.
MAX_AHEAD = timedelta(hours=1)
RETIRE_TIMEOUT_SECONDS = 2.0

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MalformedEntry(ValueError):
    """An entry that cannot be a last-activity record; the reason is the message."""


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
        # Labelled by outcome: "recorded" (handed to the store) or "skipped" (malformed).
        self.entries_total = entries_total
        self.worker = GroupWorker(
            redis,
            group=GROUP,
            streams=[LAST_ACTIVE_STREAM],
            consumer=consumer or unique_consumer_name("auth-"),
            handler=self.record,
            batch_size=batch_size,
            block_ms=BLOCK_MS,
            claim_idle_ms=int(claim_idle_seconds * 1000),
            # Twice per idle period: an abandoned entry waits at most 1.5 periods.
            claim_interval_seconds=claim_idle_seconds / 2,
        )

    @property
    def consumer(self) -> str:
        return self.worker.consumer

    async def run(self) -> None:
        """Consume until cancelled (the worker retries failed rounds after a pause)."""
        await self.worker.run()

    async def record(self, entries: list[Entry]) -> None:
        """Record a batch, then acknowledge it. A store failure raises: the worker
        tries the same batch again later."""
        now = datetime.now(UTC)
        activity: list[tuple[str, datetime]] = []
        for entry in entries:
            try:
                activity.append(parse_entry(entry.fields, now=now))
            except MalformedEntry as exc:
                log.warning(
                    "malformed last-active entry skipped",
                    extra={"entry_id": entry.id, "reason": str(exc)},
                )
        if activity:
            await self.users.record_last_active(activity)
        await self.worker.ack(entries)
        self.entries_total.labels("recorded").inc(len(activity))
        self.entries_total.labels("skipped").inc(len(entries) - len(activity))

    async def retire(self) -> None:
        """Leave the group on a clean stop, unless entries are still pending with this
        consumer (then they wait for another process to take them over)."""
        try:
            async with asyncio.timeout(RETIRE_TIMEOUT_SECONDS):
                await self.worker.retire()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("last-active consumer not retired", extra={"error": type(exc).__name__})
