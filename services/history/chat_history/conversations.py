"""Conversations and their members.

Direct conversations: exactly one per pair of users, claimed atomically in the store,
fixed at two members. Groups: a name, an owner (the creator) and at most
``max_group_members`` members; only the owner adds members; the owner removes anyone
and anyone may leave. When the owner leaves, the longest-standing member takes over.

Every member change is written to the store first, then through to the Redis cache
the gateway and the ingest read.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from chat_history.membership import Membership
from chat_history.messages import Progress, Timeline
from chat_shared.errors import Forbidden, Invalid, NotFound
from chat_shared.ids import new_id
from chat_shared.ingest import IngestedMessage, format_timestamp
from chat_shared.keys import ingest_shard_for, shard_seq
from chat_shared.ports.history import (
    Conversation,
    HistoryStore,
    Member,
    UserDirectory,
    direct_pair_key,
)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class ConversationView:
    """A conversation as one member sees it."""

    conversation: Conversation
    members: list[Member]
    last_seq: int
    last_message: IngestedMessage | None
    unread_count: int
    # Every member's read marker; only filled for a single conversation's view (clients
    # show "read by" from it), never for the whole list.
    read_markers: dict[str, int] | None = None

    @property
    def updated_at_ms(self) -> int:
        latest = self.last_message.created_at_ms if self.last_message else 0
        return max(self.conversation.updated_at_ms, latest)

    def public(self) -> dict[str, Any]:
        owner = next((m.user_id for m in self.members if m.role == "owner"), None)
        # The owner first, then everyone in joining order.
        ordered = sorted(self.members, key=lambda m: m.role != "owner")
        return {
            "id": self.conversation.id,
            "kind": self.conversation.kind,
            "name": self.conversation.name,
            "members": [m.user_id for m in ordered],
            "owner_id": owner,
            "last_seq": self.last_seq,
            "last_message": self.last_message.public() if self.last_message else None,
            "unread_count": self.unread_count,
            "created_at": format_timestamp(self.conversation.created_at_ms),
            "updated_at": format_timestamp(self.updated_at_ms),
            "read_markers": self.read_markers,
        }


def _unique(ids: Sequence[str], *, without: str) -> list[str]:
    return [i for i in dict.fromkeys(ids) if i != without]


class Conversations:
    def __init__(
        self,
        store: HistoryStore,
        redis: Redis,
        membership: Membership,
        directory: UserDirectory,
        timeline: Timeline,
        *,
        shards: int,
        max_group_members: int,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.redis = redis
        self.membership = membership
        self.directory = directory
        self.timeline = timeline
        self.shards = shards
        self.max_group_members = max_group_members
        self.clock = clock

    # Creating ----------------------------------------------------------------------

    async def create_direct(
        self, user_id: str, member_ids: Sequence[str], *, bearer_token: str
    ) -> tuple[ConversationView, bool]:
        """The pair's conversation and whether this call created it."""
        others = _unique(member_ids, without=user_id)
        if not others:
            raise Invalid("A direct conversation needs another user; not yourself.")
        if len(others) > 1:
            raise Invalid("A direct conversation has exactly one other member.")
        peer = others[0]
        pair = direct_pair_key(user_id, peer)
        existing_id = await self.store.direct_conversation_id(pair)
        if existing_id is not None and await self.store.get_conversation(existing_id):
            return await self.view(user_id, existing_id), False
        await self._require_users([peer], bearer_token)
        now = self.clock()
        candidate = existing_id or new_id(now)
        winner = await self.store.claim_direct_pair(pair, candidate)
        created = existing_id is None and winner == candidate
        # Written by whoever gets here: the winner, a loser racing it, or a retry after
        # a crash between the claim and the row. Same members every time.
        await self.store.create_conversation(
            Conversation(winner, "direct", None, now, now),
            [Member(user_id, "member", now), Member(peer, "member", now)],
        )
        await self._conversation_ready(winner)
        return await self.view(user_id, winner), created

    async def create_group(
        self, user_id: str, name: str, member_ids: Sequence[str], *, bearer_token: str
    ) -> ConversationView:
        name = name.strip()
        if not name:
            raise Invalid("A group needs a name.")
        others = _unique(member_ids, without=user_id)
        if len(others) + 1 > self.max_group_members:
            raise Invalid(f"A group has at most {self.max_group_members} members.")
        await self._require_users(others, bearer_token)
        now = self.clock()
        conversation = Conversation(new_id(now), "group", name, now, now)
        members = [Member(user_id, "owner", now)]
        members += [Member(other, "member", now) for other in others]
        await self.store.create_conversation(conversation, members)
        await self._conversation_ready(conversation.id)
        return await self.view(user_id, conversation.id)

    async def _conversation_ready(self, conversation_id: str) -> None:
        # The ingest refuses to guess a missing counter; a new conversation starts at 0.
        shard = ingest_shard_for(conversation_id, self.shards)
        await self.redis.set(shard_seq(shard, conversation_id), 0, nx=True)
        await self.membership.changed(conversation_id)

    async def _require_users(self, user_ids: Sequence[str], bearer_token: str) -> None:
        if not user_ids:
            return
        existing = await self.directory.existing(user_ids, bearer_token=bearer_token)
        unknown = [u for u in user_ids if u not in existing]
        if unknown:
            shown = ", ".join(unknown[:10])
            raise Invalid(f"Unknown users: {shown}" + (" …" if len(unknown) > 10 else ""))

    # Members -----------------------------------------------------------------------

    async def _group_of(
        self, user_id: str, conversation_id: str
    ) -> tuple[Conversation, list[Member], Member]:
        conversation = await self.store.get_conversation(conversation_id)
        members = await self.store.members(conversation_id) if conversation else []
        me = next((m for m in members if m.user_id == user_id), None)
        if conversation is None or me is None:
            raise NotFound("No such conversation.")
        if conversation.kind != "group":
            raise Invalid("A direct conversation always has its two members.")
        return conversation, members, me

    async def add_members(
        self,
        user_id: str,
        conversation_id: str,
        member_ids: Sequence[str],
        *,
        bearer_token: str,
    ) -> ConversationView:
        _, members, me = await self._group_of(user_id, conversation_id)
        if me.role != "owner":
            raise Forbidden("Only the group's owner can add members.")
        current = {m.user_id for m in members}
        new = [u for u in dict.fromkeys(member_ids) if u not in current]
        if len(current) + len(new) > self.max_group_members:
            raise Invalid(f"A group has at most {self.max_group_members} members.")
        if new:
            await self._require_users(new, bearer_token)
            now = self.clock()
            await self.store.add_members(
                conversation_id, [Member(u, "member", now) for u in new], now
            )
            await self.membership.changed(conversation_id)
        return await self.view(user_id, conversation_id)

    async def remove_member(self, user_id: str, conversation_id: str, member_id: str) -> None:
        _, members, me = await self._group_of(user_id, conversation_id)
        target = next((m for m in members if m.user_id == member_id), None)
        if target is None:
            raise NotFound("No such member in this conversation.")
        if member_id != user_id and me.role != "owner":
            raise Forbidden("Only the group's owner can remove other members.")
        await self.store.remove_member(conversation_id, member_id, self.clock())
        if target.role == "owner":
            await self._hand_over_ownership(conversation_id)
        await self.membership.changed(conversation_id)

    async def _hand_over_ownership(self, conversation_id: str) -> None:
        # The longest-standing member still there becomes owner. Read after the
        # removal; set_role refuses a member who left meanwhile, so try the next.
        for candidate in await self.store.members(conversation_id):
            if await self.store.set_role(conversation_id, candidate.user_id, "owner"):
                return

    # Reading -----------------------------------------------------------------------

    async def view(self, user_id: str, conversation_id: str) -> ConversationView:
        """One conversation; :class:`NotFound` unless the caller is a member."""
        await self.membership.require_member(conversation_id, user_id)
        views = await self._views(user_id, [conversation_id])
        if not views:
            raise NotFound("No such conversation.")
        view = views[0]
        markers = await self.store.read_markers(conversation_id, [m.user_id for m in view.members])
        return dataclasses.replace(view, read_markers=markers)

    async def list_for(self, user_id: str) -> list[ConversationView]:
        """The caller's conversations, most recent activity first."""
        views = await self._views(user_id, await self.store.conversation_ids_of(user_id))
        views.sort(key=lambda v: (v.updated_at_ms, v.conversation.id), reverse=True)
        return views

    async def _views(self, user_id: str, conversation_ids: Sequence[str]) -> list[ConversationView]:
        if not conversation_ids:
            return []
        conversations = await self.store.get_conversations(conversation_ids)
        members = await self.store.members_of_many([c.id for c in conversations])
        mine = [
            c for c in conversations if any(m.user_id == user_id for m in members.get(c.id, []))
        ]
        progress: dict[str, Progress] = await self.timeline.progress([c.id for c in mine])
        latest = await self.timeline.latest(progress)
        read = await self.store.read_seqs(user_id)
        return [
            ConversationView(
                conversation=c,
                members=members.get(c.id, []),
                last_seq=progress[c.id].last_seq,
                last_message=latest.get(c.id),
                unread_count=max(0, progress[c.id].last_seq - read.get(c.id, 0)),
            )
            for c in mine
        ]
