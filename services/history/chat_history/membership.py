"""Membership as the domain reads it: the Redis cache first, the store on a miss.

The store is the truth. After every change history writes the new state through to
the cache (:meth:`Membership.changed`); a miss fills it; :meth:`Membership.rebuild`
rewrites all of it, which start-up and the watchdog do when the loaded marker is gone.
Every write takes its ticket before reading the store (see
:mod:`chat_shared.membership`), so concurrent writers cannot leave a stale set.
"""

from __future__ import annotations

import logging

from chat_shared.errors import NotFound
from chat_shared.membership import MembershipCache
from chat_shared.ports.history import ConversationStore

log = logging.getLogger(__name__)

_REBUILD_CHUNK = 500


class Membership:
    def __init__(self, store: ConversationStore, cache: MembershipCache) -> None:
        self.store = store
        self.cache = cache

    async def is_member(self, conversation_id: str, user_id: str) -> bool:
        cached = await self.cache.is_member(conversation_id, user_id)
        if cached is not None:
            return cached
        members = await self.load(conversation_id)
        return members is not None and user_id in members

    async def require_member(self, conversation_id: str, user_id: str) -> None:
        """Raise :class:`NotFound` for a non-member: whether the conversation exists
        is nobody else's business."""
        if not await self.is_member(conversation_id, user_id):
            raise NotFound("No such conversation.")

    async def load(self, conversation_id: str) -> frozenset[str] | None:
        """Read the members from the store and cache them; ``None`` when there is no
        such conversation (nothing is cached for ids that do not exist)."""
        ticket = await self.cache.ticket()
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None:
            return None
        members = frozenset(m.user_id for m in await self.store.members(conversation_id))
        await self.cache.replace(conversation_id, conversation.kind, members, ticket=ticket)
        return members

    async def load_members(self, conversation_id: str) -> None:
        """The ingest's ``MembershipLoader``: fill the cache or say there is nothing."""
        if await self.load(conversation_id) is None:
            raise NotFound("No such conversation.")

    async def changed(self, conversation_id: str) -> None:
        """Write through after a membership change has reached the store."""
        await self.load(conversation_id)

    async def rebuild(self) -> int:
        """Rewrite the whole cache from the store; returns the conversations written."""
        ticket = await self.cache.ticket()
        records = await self.store.all_memberships()
        for start in range(0, len(records), _REBUILD_CHUNK):
            await self.cache.replace_many(records[start : start + _REBUILD_CHUNK], ticket=ticket)
        await self.cache.mark_loaded()
        log.info("membership cache rebuilt", extra={"conversations": len(records)})
        return len(records)

    async def ensure_loaded(self) -> bool:
        """Rebuild when the loaded marker is missing (Redis lost its data)."""
        if await self.cache.is_loaded():
            return False
        await self.rebuild()
        return True
