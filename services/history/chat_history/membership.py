"""Membership as the domain reads it: the Redis cache first, the store on a miss.

The store is the truth. After every change history writes the new state through to
the cache (:meth:`Membership.changed`), and a miss fills it for that conversation.
Start-up reads nothing from the store. Only when the loaded marker is gone (Redis
lost its data, or a first deployment) does the maintenance loop of one pod, holding a
lock, rewrite the cache from a paged scan (:meth:`Membership.rebuild`), so the
fan-out and presence, which read the cache and cannot fill it, recover everything.
Every write takes its ticket before reading the store (see
:mod:`chat_shared.membership`), so concurrent writers cannot leave a stale set.
"""

from __future__ import annotations

import logging
import uuid

from chat_shared.errors import NotFound
from chat_shared.keys import members_rebuild_lease_key
from chat_shared.leases import Leases
from chat_shared.membership import MembershipCache
from chat_shared.ports.history import ConversationStore

log = logging.getLogger(__name__)

# Member rows per store page of a rebuild; the lease outlives a slow page by far.
# Two pods overlapping after a stall is harmless: every write carries the ticket.
_REBUILD_PAGE_ROWS = 2000
_REBUILD_LEASE_MS = 120_000


class Membership:
    def __init__(self, store: ConversationStore, cache: MembershipCache) -> None:
        self.store = store
        self.cache = cache
        self.leases = Leases(cache.redis)
        self._owner = uuid.uuid4().hex

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
        """Rewrite the cache from the store, page by page; returns the conversations
        written. The ticket is taken before the first read, so a change made while
        the scan runs (written through with a newer ticket) is never overwritten."""
        ticket = await self.cache.ticket()
        written = 0
        async for records in self.store.membership_pages(_REBUILD_PAGE_ROWS):
            await self.cache.replace_many(records, ticket=ticket)
            written += len(records)
            await self.leases.renew(members_rebuild_lease_key(), self._owner, _REBUILD_LEASE_MS)
        await self.cache.mark_loaded()
        log.info("membership cache rebuilt", extra={"conversations": written})
        return written

    async def ensure_loaded(self) -> bool:
        """Rebuild when the loaded marker is missing and no other pod is at it."""
        if await self.cache.is_loaded():
            return False
        lease = members_rebuild_lease_key()
        if not await self.leases.acquire(lease, self._owner, _REBUILD_LEASE_MS):
            return False
        try:
            await self.rebuild()
        finally:
            await self.leases.release(lease, self._owner)
        return True
