"""The event feed between the socket and the caller: every message once, in seq order
per conversation, whatever the connection went through.

Two sides. The receiving side (called by the session as frames arrive) drops messages
whose seq was already seen, fills a skipped seq range from history before the message
that revealed it, and on ``resync`` pages history after the last seq of every
conversation. The taking side (the caller iterating) commits: a message's seq and
frame cursor enter the persistable :class:`DeviceState` only once the caller has
taken it, so a saved state never claims more than the application processed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from chat_client.errors import ApiError, NotFound, TransportError
from chat_client.events import Event, MessageReceived, Resynced
from chat_client.models import Conversation, Message, MessagePage
from chat_client.state import DeviceState

FILL_PAGE = 200
FILL_ATTEMPTS = 5
FILL_RETRY_DELAY = 0.2


class HistorySource(Protocol):
    async def conversations(self) -> list[Conversation]: ...

    async def messages(
        self,
        conversation_id: str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> MessagePage: ...


class FillFailed(Exception):
    """History could not supply missing messages; the session reconnects from the
    cursor before them and tries again, so nothing is skipped."""


@dataclass(frozen=True, slots=True)
class _Item:
    event: Event | None
    cursor: str | None = None  # the inbox position this item completes


@dataclass(frozen=True, slots=True)
class _End:
    error: BaseException | None


def _is_marker(item: _Item | _End) -> bool:
    return isinstance(item, _Item) and item.event is None


class Feed:
    def __init__(
        self,
        state: DeviceState,
        history: HistorySource,
        *,
        backfill_limit: int = 200,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.state = state
        self._history = history
        self._backfill_limit = backfill_limit
        self._on_commit = on_commit
        # Highest seq received per conversation (the state holds the highest taken).
        self._received: dict[str, int] = dict(state.last_seqs)
        self._items: deque[_Item | _End] = deque()
        self._ready = asyncio.Event()

    # Receiving side ------------------------------------------------------------------

    def _put(self, item: _Item | _End) -> None:
        self._items.append(item)
        self._ready.set()

    def emit(self, event: Event) -> None:
        self._put(_Item(event))

    def mark(self, cursor: str) -> None:
        """An inbox position reached with nothing to show (a repeat, a hello)."""
        self._put(_Item(None, cursor))

    async def live(self, message: Message, cursor: str | None) -> None:
        """A message pushed by the gateway."""
        known = self._received.get(message.conversation_id)
        if known is not None and message.seq <= known:
            if cursor is not None:
                self.mark(cursor)
            return
        if known is not None and message.seq > known + 1:
            await self._fill(message.conversation_id, known, message.seq - 1)
        self._accept(message, "live", cursor)

    async def resync(self, reason: str, cursor: str | None) -> int:
        """The cursor fell out of the inbox: take what was missed from history.
        Conversations this device never saw get their newest ``backfill_limit``."""
        try:
            conversations = await self._history.conversations()
        except (TransportError, ApiError) as exc:
            raise FillFailed(f"listing conversations: {exc}") from exc
        filled = 0
        for conversation in conversations:
            known = self._received.get(conversation.id)
            after = (
                known if known is not None else max(0, conversation.last_seq - self._backfill_limit)
            )
            if conversation.last_seq > after:
                filled += await self._fill(conversation.id, after, conversation.last_seq)
        if cursor is not None:
            self.mark(cursor)
        self.emit(Resynced(reason, filled))
        return filled

    def _accept(self, message: Message, source: str, cursor: str | None) -> None:
        self._received[message.conversation_id] = message.seq
        event = MessageReceived(message, "history" if source == "history" else "live")
        self._put(_Item(event, cursor))

    async def _fill(self, conversation_id: str, after: int, up_to: int) -> int:
        """Deliver seqs ``after+1 .. up_to`` from history, oldest first."""
        count = 0
        # A conversation new to this device starts at ``after`` (older ones are skipped).
        self._received.setdefault(conversation_id, after)
        for attempt in range(FILL_ATTEMPTS):
            try:
                count += await self._page_until(conversation_id, up_to)
            except NotFound:
                return count  # no longer a member: there is nothing we may read
            except (TransportError, ApiError):
                pass  # the service is down or overloaded: wait and try again
            if self._received[conversation_id] >= up_to:
                return count
            await asyncio.sleep(FILL_RETRY_DELAY * (attempt + 1))
        raise FillFailed(f"history of {conversation_id} did not reach seq {up_to}")

    async def _page_until(self, conversation_id: str, up_to: int) -> int:
        count = 0
        while True:
            after = self._received[conversation_id]
            if after >= up_to:
                return count
            page = await self._history.messages(
                conversation_id, after_seq=after, limit=min(FILL_PAGE, up_to - after)
            )
            for message in page.messages:
                if message.seq > self._received[conversation_id]:
                    self._accept(message, "history", None)
                    count += 1
            if not page.messages or not page.has_more:
                return count

    def end(self, error: BaseException | None = None) -> None:
        """No more events: iteration stops after the queued ones (raising ``error``)."""
        self._put(_End(error))

    # Taking side ---------------------------------------------------------------------

    async def next(self) -> Event:
        while True:
            while not self._items:
                self._ready.clear()
                await self._ready.wait()
            item = self._items.popleft()
            if isinstance(item, _End):
                # Leave an end marker for later calls; raise the error only once.
                self._items.appendleft(_End(None))
                if item.error is not None:
                    raise item.error
                raise StopAsyncIteration
            self._commit(item)
            if item.event is not None:
                # Positions right behind this event with nothing to show are taken
                # with it, so the state does not lag until the next event.
                while self._items and _is_marker(self._items[0]):
                    self._commit(cast(_Item, self._items.popleft()))
                return item.event

    def _commit(self, item: _Item) -> None:
        event = item.event
        if isinstance(event, MessageReceived):
            message = event.message
            seqs = self.state.last_seqs
            seqs[message.conversation_id] = max(seqs.get(message.conversation_id, 0), message.seq)
        if item.cursor is not None:
            self.state.cursor = item.cursor
            self._on_commit()
