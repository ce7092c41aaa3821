"""Turning pages of member rows into pages of whole conversations (both engines)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from chat_shared.membership import MembershipRecord

# Each row is (conversation_id, user_id); the rows of one conversation are adjacent.
RowPages = AsyncIterator[Sequence[tuple[str, str]]]
KindsOf = Callable[[list[str]], Awaitable[dict[str, str]]]


async def membership_records(
    pages: RowPages, kinds_of: KindsOf
) -> AsyncIterator[list[MembershipRecord]]:
    """Yield one list of records per page of rows. A page may end inside a
    conversation, so its last conversation is held back and completed by the next
    page. Conversations without a conversation row (a creation that failed half-way)
    are left out."""
    carried: dict[str, set[str]] = {}
    async for page in pages:
        members = carried
        for conversation_id, user_id in page:
            members.setdefault(conversation_id, set()).add(user_id)
        last = page[-1][0] if page else None
        carried = {last: members.pop(last)} if last is not None else {}
        if members:
            yield await _records(members, kinds_of)
    if carried:
        yield await _records(carried, kinds_of)


async def _records(members: dict[str, set[str]], kinds_of: KindsOf) -> list[MembershipRecord]:
    kinds = await kinds_of(list(members))
    return [
        MembershipRecord(cid, kinds[cid], frozenset(ids))
        for cid, ids in members.items()
        if cid in kinds
    ]
