"""Pages map onto store partitions: one read of at most two buckets per page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from chat_history.messages import Timeline
from chat_history.settings import MAX_PAGE_LIMIT, HistorySettings
from chat_history.storage.sqlite import SqliteHistoryStore
from chat_history.tail import UnpersistedTail
from chat_shared.ingest import IngestedMessage
from chat_shared.ports.history import bucket_of
from chat_shared.store.migrate import migrate_sqlite, sqlite_path

BUCKET = MAX_PAGE_LIMIT  # the smallest bucket the settings allow
TOTAL = 2 * BUCKET + 50


class SpiedStore(SqliteHistoryStore):
    """The real SQLite store, noting which seq ranges it was asked for."""

    ranges: list[tuple[int, int]]

    async def messages_between(
        self, conversation_id: str, low_seq: int, high_seq: int
    ) -> list[IngestedMessage]:
        self.ranges.append((low_seq, high_seq))
        return await super().messages_between(conversation_id, low_seq, high_seq)


@pytest.fixture
async def timeline(data_dir: Path, redis: Redis) -> AsyncIterator[Timeline]:
    settings = HistorySettings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    migrate_sqlite(settings, "history")
    store = SpiedStore(sqlite_path(settings, "history"), bucket_size=BUCKET)
    store.ranges = []
    await store.save_messages(
        [
            IngestedMessage(f"id{seq}", "c1", seq, "u1", f"m{seq}", f"k{seq}", seq)
            for seq in range(1, TOTAL + 1)
        ]
    )
    yield Timeline(store, redis, UnpersistedTail(redis, 4), 4)
    await store.close()


@pytest.mark.parametrize(
    ("before", "after", "limit"),
    [
        (None, None, 50),
        (None, None, MAX_PAGE_LIMIT),
        (BUCKET + 1, None, MAX_PAGE_LIMIT),
        (BUCKET * 2 + 7, None, MAX_PAGE_LIMIT),
        (3, None, 10),
        (None, 0, MAX_PAGE_LIMIT),
        (None, BUCKET - 1, MAX_PAGE_LIMIT),
        (None, BUCKET * 2 - 5, 20),
        (None, TOTAL - 3, 50),
    ],
)
async def test_each_page_reads_at_most_two_partitions(
    timeline: Timeline, before: int | None, after: int | None, limit: int
) -> None:
    store = timeline.store
    assert isinstance(store, SpiedStore)
    page = await timeline.page("c1", before_seq=before, after_seq=after, limit=limit)
    assert 0 < len(page.messages) <= limit
    [(low, high)] = store.ranges
    assert bucket_of(high, BUCKET) - bucket_of(low, BUCKET) <= 1
    seqs = [m.seq for m in page.messages]
    assert seqs == sorted(seqs, reverse=after is None)
