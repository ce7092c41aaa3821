"""Read markers: how far each member has read each conversation.

A marker only moves forward and never past the conversation's newest message. Markers
arrive two ways with the same rules: ``POST /v1/conversations/{id}/read`` and the
gateway's read-marker stream (WebSocket ``read`` frames, fields ``u`` user, ``c``
conversation, ``q`` seq), which the ``history-reads`` group consumes. A stream entry
from a non-member or beyond the newest message is dropped, not retried.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chat_history.membership import Membership
from chat_history.messages import Timeline
from chat_history.metrics import HistoryMetrics
from chat_shared.errors import Invalid
from chat_shared.keys import READ_MARKERS_STREAM
from chat_shared.streams import Entry, GroupWorker, unique_consumer_name

if TYPE_CHECKING:
    from chat_history.runtime import HistoryRuntime
    from chat_shared.ports.history import ReadMarkerStore

log = logging.getLogger(__name__)

READS_GROUP = "history-reads"


class ReadMarkers:
    def __init__(self, store: ReadMarkerStore, membership: Membership, timeline: Timeline) -> None:
        self.store = store
        self.membership = membership
        self.timeline = timeline

    async def mark_read(self, user_id: str, conversation_id: str, seq: int) -> None:
        await self.membership.require_member(conversation_id, user_id)
        last = await self.timeline.last_seq(conversation_id)
        if seq > last:
            raise Invalid(f"seq {seq} is beyond the newest message of the conversation ({last}).")
        await self.store.advance_read(user_id, conversation_id, seq)

    async def apply(self, user_id: str, conversation_id: str, seqs: list[int]) -> bool:
        """The same rules for markers from the stream: the furthest allowed one of
        ``seqs`` is applied; ``False`` when every one was dropped."""
        if not await self.membership.is_member(conversation_id, user_id):
            return False
        last = await self.timeline.last_seq(conversation_id)
        allowed = [seq for seq in seqs if 0 <= seq <= last]
        if not allowed:
            return False
        await self.store.advance_read(user_id, conversation_id, max(allowed))
        return True


def _field(fields: dict[bytes, bytes], name: bytes) -> str:
    return fields[name].decode()


class ReadMarkerConsumer:
    """The ``history-reads`` group on the gateway's read-marker stream."""

    def __init__(
        self, runtime: HistoryRuntime, metrics: HistoryMetrics, *, consumer_name: str | None = None
    ) -> None:
        settings = runtime.settings
        self.read_markers = runtime.read_markers
        self.metrics = metrics
        self.worker = GroupWorker(
            runtime.redis,
            group=READS_GROUP,
            streams=[READ_MARKERS_STREAM],
            consumer=consumer_name or unique_consumer_name("reads-"),
            handler=self.handle,
            batch_size=settings.consumer_batch_size,
            block_ms=settings.consumer_block_ms,
            claim_idle_ms=settings.claim_idle_ms,
            claim_interval_seconds=settings.claim_interval_seconds,
        )

    async def run(self) -> None:
        await self.worker.run()

    async def handle(self, entries: list[Entry]) -> None:
        # Several markers of one user in one batch: only the furthest allowed counts.
        markers: dict[tuple[str, str], list[int]] = {}
        for entry in entries:
            try:
                key = (_field(entry.fields, b"u"), _field(entry.fields, b"c"))
                seq = int(entry.fields[b"q"])
            except (KeyError, ValueError, UnicodeDecodeError):
                log.warning("malformed read marker dropped", extra={"entry_id": entry.id})
                continue
            markers.setdefault(key, []).append(seq)
        applied = 0
        for (user_id, conversation_id), seqs in markers.items():
            applied += await self.read_markers.apply(user_id, conversation_id, seqs)
        # Reached only when every marker was applied or dropped: a store failure
        # raises, leaves the batch pending and it is claimed again later.
        await self.worker.ack(entries)
        self.metrics.read_markers.inc(applied)
