"""The history service's storage port: conversations, messages, read markers.

Both adapters (SQLite and Cassandra) implement :class:`HistoryStore` with the same
semantics, which the contract test suite checks engine by engine:

- one direct conversation per pair of users: :meth:`ConversationStore.claim_direct_pair`
  is atomic, so of two concurrent claims exactly one conversation id wins;
- every write is idempotent: creating a conversation, adding members and saving
  messages again changes nothing (a message's key is its conversation and seq);
- messages live in partitions ``(conversation_id, bucket = seq // bucket_size)``; a
  range of at most ``bucket_size`` seqs touches at most two partitions;
- the first message stored at a (conversation, seq) keeps it; another id offered
  there is reported as a :class:`SeqConflict`, never written over it;
- a conversation's progress (highest contiguous stored seq) and the read markers only
  move forward, whatever order concurrent writes land in, and progress never passes
  a seq that is not stored.

Times are milliseconds since the epoch (UTC), which both engines store exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from chat_shared.ingest import IngestedMessage
from chat_shared.membership import MembershipRecord

ConversationKind = Literal["direct", "group"]
Role = Literal["owner", "member"]


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    kind: ConversationKind
    name: str | None
    created_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    role: Role
    joined_at_ms: int


@dataclass(frozen=True, slots=True)
class SeqConflict:
    """A message whose (conversation, seq) already holds a different message id.

    The stored message wins and stays; the newcomer is reported, never written. It
    means two writers were handed one seq (a fencing failure upstream), so the caller
    must make it loud: log, count, park the newcomer for an operator.
    """

    message: IngestedMessage
    stored_id: str


def direct_pair_key(user_a: str, user_b: str) -> str:
    """The same key for (a, b) and (b, a); the length prefix keeps it unambiguous."""
    low, high = sorted((user_a, user_b))
    return f"{len(low)}:{low}|{high}"


def bucket_of(seq: int, bucket_size: int) -> int:
    return seq // bucket_size


# The messages table's columns, in the order ``message_row`` returns them; both
# engines store the same row.


def message_row(m: IngestedMessage, bucket_size: int) -> tuple[object, ...]:
    """A message as the row both engines store: (conversation_id, bucket, seq, id,
    sender_id, body, client_id, created_ms)."""
    return (
        m.conversation_id,
        bucket_of(m.seq, bucket_size),
        m.seq,
        m.id,
        m.sender_id,
        m.body,
        m.client_id,
        m.created_at_ms,
    )


class ConversationStore(Protocol):
    async def create_conversation(
        self, conversation: Conversation, members: Sequence[Member]
    ) -> None:
        """Write a conversation and its members (idempotent: an existing row stays)."""
        ...

    async def claim_direct_pair(self, pair_key: str, conversation_id: str) -> str:
        """Bind a pair to ``conversation_id`` unless it is bound already; return the id
        the pair is bound to after the call (ours, or the earlier winner's)."""
        ...

    async def direct_conversation_id(self, pair_key: str) -> str | None: ...

    async def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    async def get_conversations(self, conversation_ids: Sequence[str]) -> list[Conversation]:
        """The conversations among the ids that exist (any order)."""
        ...

    async def members(self, conversation_id: str) -> list[Member]:
        """Members ordered by join time, then user id."""
        ...

    async def members_of_many(self, conversation_ids: Sequence[str]) -> dict[str, list[Member]]: ...

    async def add_members(
        self, conversation_id: str, members: Sequence[Member], updated_at_ms: int
    ) -> None:
        """Add members (an existing member keeps role and join time); bump ``updated_at``."""
        ...

    async def remove_member(
        self, conversation_id: str, user_id: str, updated_at_ms: int
    ) -> None: ...

    async def set_role(self, conversation_id: str, user_id: str, role: Role) -> bool:
        """Change a member's role; False (and nothing written) when not a member."""
        ...

    async def conversation_ids_of(self, user_id: str) -> list[str]: ...

    def membership_pages(self, page_size: int) -> AsyncIterator[list[MembershipRecord]]:
        """Every conversation that has members, with their ids, about ``page_size``
        member rows per page, fetched as the caller asks for the next page (to rebuild
        the Redis cache after Redis lost its data, never at start-up)."""
        ...


class MessageStore(Protocol):
    async def save_messages(self, messages: Sequence[IngestedMessage]) -> list[SeqConflict]:
        """Persist a batch; replays of saved messages change nothing. The first message
        stored at a (conversation, seq) keeps it: a different id there is returned as
        a conflict and not written. Progress moves after the rows, never past a hole."""
        ...

    async def last_seq(self, conversation_id: str) -> int:
        """The conversation's progress: the highest seq with every seq from 1 to it
        stored (0 when none). Readers may rely on no hole below it."""
        ...

    async def last_seqs(self, conversation_ids: Sequence[str]) -> dict[str, int]: ...

    async def messages_between(
        self, conversation_id: str, low_seq: int, high_seq: int
    ) -> list[IngestedMessage]:
        """Persisted messages with ``low_seq <= seq <= high_seq``, oldest first."""
        ...

    async def messages_at(self, wanted: Mapping[str, int]) -> dict[str, IngestedMessage]:
        """For each conversation id, its message with the given seq, when persisted."""
        ...


class ReadMarkerStore(Protocol):
    async def advance_read(self, user_id: str, conversation_id: str, seq: int) -> None:
        """Move the marker to ``seq`` if that is further; never back."""
        ...

    async def read_seq(self, user_id: str, conversation_id: str) -> int:
        """The marker (0 when the user has read nothing)."""
        ...

    async def read_markers(self, conversation_id: str, user_ids: Sequence[str]) -> dict[str, int]:
        """Each user's marker in one conversation (0 when unread), in one round trip."""
        ...

    async def read_seqs(self, user_id: str) -> dict[str, int]:
        """Every marker of a user, by conversation id."""
        ...


class HistoryStore(ConversationStore, MessageStore, ReadMarkerStore, Protocol):
    """Everything the history service stores, behind one engine."""

    bucket_size: int

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class UserDirectory(Protocol):
    """Which user ids exist (the auth service owns accounts)."""

    async def existing(self, user_ids: Sequence[str], *, bearer_token: str) -> set[str]:
        """The ids among ``user_ids`` that belong to an account. Raises
        :class:`~chat_shared.errors.Unavailable` when the directory cannot answer."""
        ...
