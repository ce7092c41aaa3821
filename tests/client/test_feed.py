"""The feed's ordering rules in isolation, with an in-memory history: repeats dropped,
gaps filled before the message that revealed them, resync paging, commit on take."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from chat_client import (
    Conversation,
    DeviceState,
    Message,
    MessagePage,
    MessageReceived,
    Resynced,
    TransportError,
)
from chat_client import feed as feed_module
from chat_client.feed import Feed, FillFailed

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def message(conversation_id: str, seq: int) -> Message:
    body, client_id = f"#{seq}", f"k{seq}"
    return Message(f"{conversation_id}-{seq}", conversation_id, seq, "u1", body, client_id, NOW)


def conversation(conversation_id: str, last_seq: int) -> Conversation:
    return Conversation(
        conversation_id, "direct", None, ("u1", "u2"), None, last_seq, None, 0, NOW, NOW
    )


class FakeHistory:
    def __init__(self, last: dict[str, int], failures: int = 0) -> None:
        self.last = last
        self.failures = failures
        self.pages: list[tuple[str, int, int]] = []

    async def conversations(self) -> list[Conversation]:
        return [conversation(cid, last) for cid, last in self.last.items()]

    async def messages(
        self,
        conversation_id: str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> MessagePage:
        if self.failures:
            self.failures -= 1
            raise TransportError("history is down")
        assert after_seq is not None and before_seq is None
        self.pages.append((conversation_id, after_seq, limit))
        top = min(self.last[conversation_id], after_seq + limit)
        found = tuple(message(conversation_id, s) for s in range(after_seq + 1, top + 1))
        return MessagePage(found, has_more=top < self.last[conversation_id])


async def take(feed: Feed, count: int) -> list[MessageReceived]:
    taken = []
    while len(taken) < count:
        event = await asyncio.wait_for(feed.next(), 1)
        if isinstance(event, MessageReceived):
            taken.append(event)
    return taken


async def test_repeats_are_dropped_and_their_cursor_is_still_taken() -> None:
    state = DeviceState()
    feed = Feed(state, FakeHistory({}))
    await feed.live(message("c", 1), "1-0")
    await feed.live(message("c", 1), "2-0")  # replayed after a reconnect
    await feed.live(message("c", 2), "3-0")
    events = await take(feed, 2)
    assert [e.message.seq for e in events] == [1, 2]
    assert state.cursor == "3-0"


async def test_a_skipped_seq_is_filled_from_history_before_the_live_message() -> None:
    state = DeviceState(last_seqs={"c": 1})
    history = FakeHistory({"c": 4})
    feed = Feed(state, history)
    await feed.live(message("c", 4), "9-0")
    events = await take(feed, 3)
    assert [(e.message.seq, e.source) for e in events] == [
        (2, "history"),
        (3, "history"),
        (4, "live"),
    ]
    assert history.pages == [("c", 1, 2)]


async def test_resync_pages_known_conversations_and_backfills_new_ones() -> None:
    state = DeviceState(last_seqs={"known": 2})
    history = FakeHistory({"known": 450, "new": 500})
    feed = Feed(state, history, backfill_limit=3)
    filled = await feed.resync("cursor_too_old", "7-0")
    assert filled == 448 + 3
    events = await take(feed, filled)
    known = [e.message.seq for e in events if e.message.conversation_id == "known"]
    assert known == list(range(3, 451))
    assert [e.message.seq for e in events if e.message.conversation_id == "new"] == [
        498,
        499,
        500,
    ]
    assert isinstance(await feed.next(), Resynced)
    assert state.cursor == "7-0"
    assert state.last_seqs == {"known": 450, "new": 500}


async def test_state_moves_only_when_the_caller_takes_the_message() -> None:
    state = DeviceState(cursor="1-0", last_seqs={"c": 1})
    feed = Feed(state, FakeHistory({}))
    await feed.live(message("c", 2), "2-0")
    assert (state.cursor, state.last_seqs) == ("1-0", {"c": 1})
    await take(feed, 1)
    assert (state.cursor, state.last_seqs) == ("2-0", {"c": 2})


async def test_fill_retries_then_gives_up_so_the_session_reconnects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feed_module, "FILL_RETRY_DELAY", 0.0)
    recovering = Feed(DeviceState(last_seqs={"c": 1}), FakeHistory({"c": 3}, failures=2))
    await recovering.live(message("c", 3), "3-0")
    assert [e.message.seq for e in await take(recovering, 2)] == [2, 3]

    down = Feed(DeviceState(last_seqs={"c": 1}), FakeHistory({"c": 3}, failures=99))
    with pytest.raises(FillFailed):
        await down.live(message("c", 3), "3-0")


async def test_iteration_ends_after_queued_events_with_the_error_once() -> None:
    feed = Feed(DeviceState(), FakeHistory({}))
    await feed.live(message("c", 1), "1-0")
    feed.end(RuntimeError("refused"))
    assert isinstance(await feed.next(), MessageReceived)
    with pytest.raises(RuntimeError):
        await feed.next()
    with pytest.raises(StopAsyncIteration):
        await feed.next()
