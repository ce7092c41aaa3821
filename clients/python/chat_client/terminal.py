"""The interactive part of ``chat-cli``: commands typed on stdin, events printed on
stdout. Plain lines only, so it works in any terminal and through a pipe."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from chat_client.client import ChatClient
from chat_client.errors import ChatClientError
from chat_client.events import ConnectionChanged, Event, MessageReceived, Resynced
from chat_client.models import Conversation, Message
from chat_client.session import RealtimeSession

HELP = """commands:
  /list                   your conversations, with unread counts
  /open N                 open conversation number N of the list
  /open NAME              open (or start) the direct chat with user NAME
  /group NAME USER...     create a group with these users and open it
  /history [N]            show the last N messages (default 20)
  /quit                   leave (Ctrl-D too)
anything else is sent to the open conversation"""

HISTORY_LINES = 20
DRAIN_SECONDS = 15.0


class UsageError(Exception):
    """Something typed that cannot be done; shown to the user, nothing else happens."""


def _clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%H:%M")


class Terminal:
    def __init__(
        self, client: ChatClient, session: RealtimeSession, write: Callable[[str], None]
    ) -> None:
        self.client = client
        self.session = session
        self.write = write
        self.me: str | None = client.user_id
        self.names: dict[str, str] = {}
        self.listed: list[Conversation] = []
        self.titles: dict[str, str] = {}
        self.current: Conversation | None = None
        self.sends: set[asyncio.Task[None]] = set()
        self._connected_once = False

    # Main loop -------------------------------------------------------------------

    async def run(self, lines: asyncio.Queue[str | None], open_target: str | None) -> int:
        """Until stdin ends or /quit (0), or the session ends on its own (1)."""
        events = asyncio.create_task(self._show_events())
        try:
            await self.show_list()
            if open_target:
                await self.handle(f"/open {open_target}")
            while True:
                next_line = asyncio.ensure_future(lines.get())
                await asyncio.wait({next_line, events}, return_when=asyncio.FIRST_COMPLETED)
                if not next_line.done():
                    next_line.cancel()
                    return 1  # the session ended (logged out elsewhere, refused...)
                line = next_line.result()
                if line is None or line.strip() in ("/quit", "/exit"):
                    break
                await self.handle(line)
            await self._drain()
            return 0
        finally:
            events.cancel()
            await asyncio.gather(events, return_exceptions=True)

    async def handle(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        try:
            if text.startswith("/"):
                await self._command(text)
            elif self.current is None:
                raise UsageError("open a conversation first (/list, then /open N)")
            else:
                self._send(self.current.id, line)
        except (ChatClientError, UsageError) as exc:
            self.write(f"! {exc}")

    async def _command(self, text: str) -> None:
        name, _, rest = text.partition(" ")
        rest = rest.strip()
        if name == "/list":
            await self.show_list()
        elif name == "/open" and rest:
            await self.open(rest)
        elif name == "/group" and len(rest.split()) >= 2:
            title, *usernames = rest.split()
            ids = [await self._user_id(u) for u in usernames]
            group = await self.client.create_group(title, ids)
            await self._enter(group)
        elif name == "/history":
            count = int(rest) if rest.isdigit() else HISTORY_LINES
            await self.show_history(count)
        else:
            self.write(HELP)

    # Conversations ---------------------------------------------------------------

    async def show_list(self) -> None:
        self.listed = await self.client.conversations()
        await self._learn_names({m for c in self.listed for m in c.members})
        if not self.listed:
            self.write("no conversations yet: /open NAME starts one")
            return
        self.write("conversations:")
        for number, conversation in enumerate(self.listed, 1):
            last = conversation.last_message
            preview = f"  {self._name(last.sender_id)}: {last.body[:40]}" if last else ""
            unread = f"{conversation.unread_count} unread" if conversation.unread_count else ""
            self.write(
                f"  {number:>2}. {self._title(conversation):<24} {conversation.kind:<6} "
                f"{unread:<10}{preview}".rstrip()
            )

    async def open(self, target: str) -> None:
        if target.isdigit():
            index = int(target) - 1
            if not 0 <= index < len(self.listed):
                raise UsageError(f"no conversation number {target} (see /list)")
            await self._enter(self.listed[index])
            return
        peer = await self._user_id(target.lstrip("@"))
        await self._enter(await self.client.create_direct(peer))

    async def _enter(self, conversation: Conversation) -> None:
        self.current = conversation
        await self._learn_names(set(conversation.members))
        self.write(f"== {self._title(conversation)} ({conversation.kind}) ==")
        await self.show_history(HISTORY_LINES)

    async def show_history(self, count: int) -> None:
        if self.current is None:
            raise UsageError("open a conversation first")
        page = await self.client.messages(self.current.id, limit=max(1, min(count, 200)))
        messages = list(reversed(page.messages))
        await self._learn_names({m.sender_id for m in messages})
        for message in messages:
            self.write(self._line(message))
        if messages:
            await self.session.mark_read(self.current.id, messages[-1].seq)

    async def _user_id(self, username: str) -> str:
        wanted = username.lower()
        for user in await self.client.search_users(wanted, limit=20):
            if user.username == wanted:
                self.names[user.id] = user.username
                return user.id
        raise UsageError(f"no user named {username}")

    # Sending and events ----------------------------------------------------------

    def _send(self, conversation_id: str, body: str) -> None:
        task = asyncio.create_task(self._deliver(conversation_id, body))
        self.sends.add(task)
        task.add_done_callback(self.sends.discard)

    async def _deliver(self, conversation_id: str, body: str) -> None:
        try:
            await self.session.send(conversation_id, body)
        except ChatClientError as exc:
            self.write(f"! not sent ({exc}): {body[:40]}")

    async def _drain(self) -> None:
        """Wait for unconfirmed messages before leaving (they are retried meanwhile)."""
        if not self.sends:
            return
        _, pending = await asyncio.wait(set(self.sends), timeout=DRAIN_SECONDS)
        if pending:
            self.write(f"! {len(pending)} message(s) were not confirmed")

    async def _show_events(self) -> None:
        try:
            async for event in self.session:
                try:
                    await self._show(event)
                except ChatClientError as exc:  # a name lookup failed: keep going
                    self.write(f"! {exc}")
        except ChatClientError as exc:
            self.write(f"! session ended: {exc}")

    async def _show(self, event: Event) -> None:
        if isinstance(event, MessageReceived):
            message = event.message
            await self._learn_names({message.sender_id})
            if self.current is not None and message.conversation_id == self.current.id:
                self.write(self._line(message))
                if message.sender_id != self.me:
                    await self.session.mark_read(message.conversation_id, message.seq)
            else:
                where = await self._title_of(message.conversation_id)
                self.write(f"(in {where}) {self._line(message)}")
        elif isinstance(event, ConnectionChanged):
            self._show_connection(event)
        elif isinstance(event, Resynced) and event.filled:
            self.write(f"-- caught up from history ({event.filled} messages)")

    def _show_connection(self, event: ConnectionChanged) -> None:
        if event.state == "connected":
            self.me = self.session.user_id or self.me
            self.write("-- reconnected" if self._connected_once else "-- connected")
            self._connected_once = True
        elif event.state == "disconnected" and self._connected_once:
            code = f" ({event.close_code})" if event.close_code else ""
            self.write(f"-- connection lost{code}; retrying in {event.retry_in or 0:.1f}s")
        elif event.state == "closed" and event.reason:
            self.write(f"-- session closed: {event.reason}")

    # Names -----------------------------------------------------------------------

    async def _learn_names(self, user_ids: set[str]) -> None:
        unknown = [u for u in user_ids if u not in self.names]
        if unknown:
            found = {u.id: u.username for u in await self.client.users_by_id(unknown)}
            for user_id in unknown:
                # Deleted accounts stay unresolved: show a short id, and ask only once.
                self.names[user_id] = found.get(user_id, user_id[:8])
        for conversation in [*self.listed, *([self.current] if self.current else [])]:
            self.titles[conversation.id] = self._title(conversation)

    async def _title_of(self, conversation_id: str) -> str:
        if conversation_id not in self.titles:
            conversation = await self.client.conversation(conversation_id)
            await self._learn_names(set(conversation.members))
            self.titles[conversation_id] = self._title(conversation)
        return self.titles[conversation_id]

    def _name(self, user_id: str) -> str:
        return self.names.get(user_id, user_id[:8])

    def _title(self, conversation: Conversation) -> str:
        if conversation.kind == "group":
            return f"#{conversation.name or conversation.id[:8]}"
        others = [m for m in conversation.members if m != self.me] or list(conversation.members)
        return self._name(others[0]) if others else conversation.id[:8]

    def _line(self, message: Message) -> str:
        return f"[{_clock(message.created_at)}] {self._name(message.sender_id)}: {message.body}"
