"""Persistence: the ``history`` consumer group moves shard-stream entries into the store.

Each batch is written in one idempotent call (a message's key is its conversation and
seq, so a replay lands on the same rows) and acknowledged only after the write. A
crash between the two replays the batch; it never loses one. Entries a dead consumer
left pending are claimed after ``claim_idle_ms``. An entry that still cannot be stored
after ``dead_letter_after`` deliveries moves to the dead-letter stream with its error
and is acknowledged, so one poison entry cannot hold back its shard's retention.

A message offered at a (conversation, seq) that already holds another message id is a
seq conflict: the store keeps the first writer, and the newcomer goes straight to the
dead-letter stream (logged and counted), because retrying it can never succeed and
dropping it would lose an acknowledged message without a trace.

Runs inside every history process, or alone::

    python -m chat_history.consumer      # settings from CHAT_* variables
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from redis.asyncio import Redis

from chat_history.metrics import HistoryMetrics
from chat_history.read_markers import ReadMarkerConsumer
from chat_history.runtime import HistoryRuntime
from chat_history.seq_fence import SeqFence
from chat_history.settings import HistorySettings
from chat_shared.ingest import Ingest, IngestedMessage, message_from_entry
from chat_shared.keys import DEAD_LETTER_STREAM, HISTORY_GROUP, shard_stream
from chat_shared.logs import configure_logging
from chat_shared.ports.history import HistoryStore, SeqConflict
from chat_shared.streams import DeadLetters, Entry, GroupWorker, unique_consumer_name
from chat_shared.web.observability import ServiceMetrics

log = logging.getLogger(__name__)


def _describe(exc: BaseException) -> str:
    # Exception texts of the parser and the store name fields, never message bodies.
    return f"{type(exc).__name__}: {exc}"


class StoreUnavailable(RuntimeError):
    """Nothing in the batch could be stored and the store does not answer: the worker
    tries the batch again later, without counting a delivery."""


class HistoryConsumer:
    def __init__(
        self,
        redis: Redis,
        store: HistoryStore,
        settings: HistorySettings,
        metrics: HistoryMetrics,
        *,
        fence: SeqFence,
        consumer_name: str | None = None,
    ) -> None:
        self.redis = redis
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.fence = fence  # one per process: it remembers the floors it wrote
        self.worker = GroupWorker(
            redis,
            group=HISTORY_GROUP,
            streams=[shard_stream(n) for n in range(settings.ingest_shards)],
            consumer=consumer_name or settings.consumer_name or unique_consumer_name(),
            handler=self.handle,
            batch_size=settings.consumer_batch_size,
            block_ms=settings.consumer_block_ms,
            claim_idle_ms=settings.claim_idle_ms,
            claim_interval_seconds=settings.claim_interval_seconds,
            dead_letters=DeadLetters(DEAD_LETTER_STREAM, after=settings.dead_letter_after),
            on_dead_letter=metrics.dead_lettered.inc,
        )

    @property
    def name(self) -> str:
        return self.worker.consumer

    async def run(self) -> None:
        # Groups exist on every shard before anything reads or trims them.
        await Ingest(self.redis, shards=self.settings.ingest_shards).ensure_groups()
        log.info("history consumer started", extra={"consumer": self.name})
        await self.worker.run()

    async def handle(self, entries: list[Entry]) -> None:
        self.metrics.redelivered.inc(sum(1 for e in entries if e.deliveries > 1))
        vanished: list[Entry] = []
        parsed: list[tuple[Entry, IngestedMessage]] = []
        for entry in entries:
            if not entry.fields:
                # Deleted while pending: nothing left to store.
                vanished.append(entry)
                continue
            try:
                parsed.append((entry, message_from_entry(entry.fields)))
            except Exception as exc:  # malformed: read again, then dead-lettered
                self.worker.note_failure(entry, _describe(exc))
        stored, conflicts, failed = await self._persist(parsed)
        if failed and not stored and not conflicts and not await self._store_answers():
            raise StoreUnavailable(f"{len(failed)} messages not stored")
        await self.worker.ack([entry for entry, _ in stored] + vanished)
        await self.fence.stored(message for _, message in stored)
        if conflicts:
            self.metrics.seq_conflicts.inc(len(conflicts))
            for entry, conflict in conflicts:
                self.worker.note_failure(
                    entry,
                    f"seq conflict: {conflict.message.conversation_id}/{conflict.message.seq}"
                    f" holds message {conflict.stored_id}, not {conflict.message.id}",
                )
            # Retrying can never succeed, and dropping would lose it without a trace.
            await self.worker.dead_letter([entry for entry, _ in conflicts])
        self.metrics.persisted.inc(len(stored))
        await self._mark_own_messages_read([message for _, message in stored])

    async def _persist(
        self, batch: Sequence[tuple[Entry, IngestedMessage]]
    ) -> tuple[
        list[tuple[Entry, IngestedMessage]],
        list[tuple[Entry, SeqConflict]],
        list[Entry],
    ]:
        """Store the batch; on failure store entry by entry to isolate the bad ones.
        Returns what is stored, what conflicts with a stored message, what failed."""
        if not batch:
            return [], [], []
        try:
            conflicts = await self.store.save_messages([message for _, message in batch])
            return (*_split(batch, conflicts), [])
        except Exception as exc:
            log.warning(
                "batch write failed; retrying one by one",
                extra={"entries": len(batch), "error": type(exc).__name__},
            )
        stored: list[tuple[Entry, IngestedMessage]] = []
        conflicting: list[tuple[Entry, SeqConflict]] = []
        failed: list[Entry] = []
        for entry, message in batch:
            try:
                found = await self.store.save_messages([message])
            except Exception as exc:
                self.worker.note_failure(entry, _describe(exc))
                failed.append(entry)
                continue
            ok, bad = _split([(entry, message)], found)
            stored += ok
            conflicting += bad
        return stored, conflicting, failed

    async def _store_answers(self) -> bool:
        try:
            await self.store.ping()
        except Exception:
            return False
        return True

    async def _mark_own_messages_read(self, messages: Sequence[IngestedMessage]) -> None:
        # A sender has read what they sent: move their marker (forward only).
        highest: dict[tuple[str, str], int] = {}
        for m in messages:
            key = (m.sender_id, m.conversation_id)
            highest[key] = max(highest.get(key, 0), m.seq)
        try:
            for (sender, conversation), seq in highest.items():
                await self.store.advance_read(sender, conversation, seq)
        except Exception as exc:  # markers are a convenience; the messages are stored
            log.warning(
                "could not advance senders' read markers", extra={"error": type(exc).__name__}
            )


def _split(
    batch: Sequence[tuple[Entry, IngestedMessage]], conflicts: Sequence[SeqConflict]
) -> tuple[list[tuple[Entry, IngestedMessage]], list[tuple[Entry, SeqConflict]]]:
    by_message = {(c.message.conversation_id, c.message.seq, c.message.id): c for c in conflicts}

    def key(m: IngestedMessage) -> tuple[str, int, str]:
        return (m.conversation_id, m.seq, m.id)

    stored = [(e, m) for e, m in batch if key(m) not in by_message]
    conflicting = [(e, by_message[key(m)]) for e, m in batch if key(m) in by_message]
    for _, conflict in conflicting:
        log.error(
            "seq conflict: message kept out of the store",
            extra={
                "conversation_id": conflict.message.conversation_id,
                "seq": conflict.message.seq,
                "message_id": conflict.message.id,
                "stored_id": conflict.stored_id,
            },
        )
    return stored, conflicting


def start_consumers(runtime: HistoryRuntime) -> HistoryConsumer:
    """Both consumers of this process, run by the runtime until it closes."""
    consumer = HistoryConsumer(
        runtime.redis, runtime.store, runtime.settings, runtime.metrics, fence=runtime.seq_fence
    )
    reads = ReadMarkerConsumer(runtime, runtime.metrics, consumer_name=consumer.name)
    runtime.start("history-consumer", consumer.run(), worker=consumer.worker)
    runtime.start("read-marker-consumer", reads.run(), worker=reads.worker)
    runtime.start("seq-fence", runtime.watch_seq_fence())
    return consumer


async def run_standalone(settings: HistorySettings) -> None:
    """The consumers without the API, until SIGTERM or SIGINT."""
    runtime = await HistoryRuntime.open(
        settings, HistoryMetrics(ServiceMetrics(settings.service_name))
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    start_consumers(runtime)
    try:
        await stop.wait()
    finally:
        await runtime.close()


def main() -> int:
    settings = HistorySettings()
    configure_logging(f"{settings.service_name}-consumer", settings.log_level)
    asyncio.run(run_standalone(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
