"""Everything a history process holds while it runs, built from settings in one place.

The API lifespan and the standalone consumer both open a :class:`HistoryRuntime`;
nothing here lives at module level, so tests can run several side by side.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import httpx2
from redis.asyncio import Redis

from chat_history.conversations import Conversations
from chat_history.directory import HttpUserDirectory
from chat_history.lag import group_lag
from chat_history.membership import Membership
from chat_history.messages import Messages, Timeline
from chat_history.metrics import HistoryMetrics
from chat_history.read_markers import READS_GROUP, ReadMarkers
from chat_history.seq_fence import SeqFence
from chat_history.settings import HistorySettings
from chat_history.storage import open_store
from chat_history.tail import UnpersistedTail
from chat_shared.ingest import Ingest
from chat_shared.keys import CONSUMER_GROUPS, HISTORY_GROUP, READ_MARKERS_STREAM, shard_stream
from chat_shared.limits import RateLimiter, Rule, per_minute, send_rule, user_subject
from chat_shared.membership import MembershipCache
from chat_shared.ports.history import HistoryStore, UserDirectory
from chat_shared.redis import connect_redis, replication_of
from chat_shared.retention import trim_shard_streams, trim_stream
from chat_shared.streams import GroupWorker, ensure_group
from chat_shared.tasks import stop_if_cancelled
from chat_shared.web.observability import CheckResult

log = logging.getLogger(__name__)

_STOP_ATTEMPTS = 50
# A consumer name idle this long with nothing pending belongs to a process long gone.
_IDLE_CONSUMER_MS = 3_600_000
_STOP_WAIT_SECONDS = 0.2


@dataclass(frozen=True)
class HistoryRules:
    """Per-user limits of the REST writes, counted in Redis over every process (the
    message limit is the ingest's, shared with the gateway)."""

    conversation: Rule
    write: Rule

    @classmethod
    def of(cls, settings: HistorySettings) -> HistoryRules:
        return cls(
            conversation=per_minute("conversation", settings.conversations_per_minute),
            write=Rule("rest_write", settings.rest_writes_per_second, settings.rest_write_burst),
        )

    async def check(self, limiter: RateLimiter, user_id: str, *rules: Rule) -> None:
        for rule in rules:
            await limiter.check(user_subject(user_id), rule)


class HistoryRuntime:
    def __init__(
        self,
        settings: HistorySettings,
        metrics: HistoryMetrics,
        *,
        redis: Redis,
        store: HistoryStore,
        http: httpx2.AsyncClient,
        directory: UserDirectory,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.redis = redis
        self.store = store
        self.http = http
        shards = settings.ingest_shards
        self.limiter = RateLimiter(redis)
        self.rules = HistoryRules.of(settings)
        self.ingest = Ingest(
            redis,
            shards=shards,
            max_chars=settings.max_message_chars,
            replication=replication_of(settings),
            limiter=self.limiter,
            send_rule=send_rule(settings),
        )
        self.cache = MembershipCache(redis, shards)
        self.membership = Membership(store, self.cache)
        self.timeline = Timeline(store, redis, UnpersistedTail(redis, shards), shards)
        self.messages = Messages(store, self.ingest, self.membership, self.timeline)
        self.read_markers = ReadMarkers(store, self.membership, self.timeline)
        self.conversations = Conversations(
            store,
            redis,
            self.membership,
            directory,
            self.timeline,
            shards=shards,
            max_group_members=settings.max_group_members,
        )
        self.seq_fence = SeqFence(redis, shards)
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: list[GroupWorker] = []

    @classmethod
    async def open(
        cls,
        settings: HistorySettings,
        metrics: HistoryMetrics,
        *,
        http_transport: httpx2.AsyncBaseTransport | None = None,
    ) -> HistoryRuntime:
        redis = connect_redis(settings)
        http = httpx2.AsyncClient(transport=http_transport)
        try:
            store = await open_store(settings)
        except BaseException:
            await redis.aclose()
            await http.aclose()
            raise
        directory = HttpUserDirectory(
            http, settings.auth_url, timeout=settings.directory_timeout_seconds
        )
        runtime = cls(settings, metrics, redis=redis, store=store, http=http, directory=directory)
        try:
            await runtime.prepare()
        except BaseException:
            await runtime.close()
            raise
        return runtime

    async def prepare(self) -> None:
        """Groups before anything reads or trims. Nothing is read from the store: a
        start costs the same however many conversations there are."""
        await self.ensure_groups()

    async def ensure_groups(self) -> None:
        # Idempotent; repeated by maintenance so groups come back after Redis data loss.
        await self.ingest.ensure_groups()
        await ensure_group(self.redis, READ_MARKERS_STREAM, READS_GROUP)

    def start(
        self, name: str, work: Coroutine[Any, Any, None], *, worker: GroupWorker | None = None
    ) -> None:
        """Run ``work`` until close; a consumer passes its ``worker`` for housekeeping."""
        task = asyncio.create_task(work, name=name)
        self._tasks.append(task)
        if worker is not None:
            self._workers.append(worker)

    async def close(self) -> None:
        await self._stop_tasks()
        await self.store.close()
        await self.http.aclose()
        await self.redis.aclose()

    async def _stop_tasks(self) -> None:
        pending = set(self._tasks)
        # A cancellation that lands as a Redis timeout fires is lost on Python 3.11
        # (asyncio.timeout); cancel again until every task has stopped.
        for _ in range(_STOP_ATTEMPTS):
            if not pending:
                break
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=_STOP_WAIT_SECONDS)
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error(
                    "background task failed",
                    exc_info=task.exception(),
                    extra={"task": task.get_name()},
                )
        if pending:
            log.error("background tasks did not stop", extra={"tasks": len(pending)})
        self._tasks.clear()

    # Maintenance ------------------------------------------------------------------

    async def watch_seq_fence(self) -> None:
        """Until cancelled: notice Redis going back in time soon after it happens."""
        while True:
            stop_if_cancelled()
            try:
                rolled_back = await self.seq_fence.check()
                self.metrics.redis_rollbacks.inc(rolled_back)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("seq fence check failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(self.settings.seq_fence_check_seconds)

    async def maintain(self) -> None:
        """Until cancelled: heal the membership cache, trim streams, refresh gauges."""
        while True:
            stop_if_cancelled()
            await self.maintain_once()
            await asyncio.sleep(self.settings.maintenance_interval_seconds)

    async def maintain_once(self) -> None:
        steps = (
            ("groups", self.ensure_groups),
            ("membership", self.membership.ensure_loaded),
            ("retention", self.trim_streams),
            ("lag", self.refresh_lag),
            ("consumers", self.forget_idle_consumers),
        )
        for name, step in steps:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:  # one failing step must not stop the others
                log.exception("maintenance step failed", extra={"step": name})

    async def trim_streams(self) -> int:
        removed = await trim_shard_streams(self.redis, self.settings.ingest_shards, CONSUMER_GROUPS)
        removed += await trim_stream(self.redis, READ_MARKERS_STREAM, [READS_GROUP])
        self.metrics.trimmed.inc(removed)
        return removed

    async def forget_idle_consumers(self) -> int:
        removed = 0
        for worker in self._workers:
            removed += await worker.forget_idle_consumers(_IDLE_CONSUMER_MS)
        return removed

    async def refresh_lag(self) -> int:
        """Update the lag gauges of both groups; returns the ``history`` group's lag."""
        streams = [shard_stream(n) for n in range(self.settings.ingest_shards)]
        history_lag = 0
        for group in CONSUMER_GROUPS:
            lag = await group_lag(self.redis, streams, group)
            self.metrics.lag.labels(group).set(lag.total)
            self.metrics.pending.labels(group).set(lag.pending)
            if group == HISTORY_GROUP:
                history_lag = lag.total
        return history_lag

    # Readiness ---------------------------------------------------------------------

    async def check_redis(self) -> CheckResult:
        await self.redis.ping()
        return "ok"

    async def check_store(self) -> CheckResult:
        await self.store.ping()
        return "ok"

    async def check_lag(self) -> CheckResult:
        lag = await self.refresh_lag()
        return "degraded" if lag > self.settings.lag_degraded_threshold else "ok"
