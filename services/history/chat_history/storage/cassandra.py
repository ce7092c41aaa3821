"""The history store on Cassandra/ScyllaDB (scylla-driver, prepared statements).

Writes are idempotent upserts, so a replayed batch or a retried request lands on the
same rows. Some things need more than an upsert:

- rows that two writers truly compete for are written only with lightweight
  transactions (``IF [NOT] EXISTS``), never mixed with plain writes: the pair row of
  a direct conversation (one conversation per pair), a message's (conversation, seq)
  cell (the first writer keeps it), and a member row (a role change never brings back
  a removed member, a repeated add never resets a role);
- values that may only grow (a conversation's highest seq, a read marker, the
  ``updated_ms`` of a conversation) are written ``USING TIMESTAMP`` derived from the
  value itself (the seq; the time in microseconds). Cassandra keeps the cell with
  the highest write timestamp, so the largest value wins whatever order concurrent
  writes arrive in, without a read or a Paxos round. These cells are never deleted,
  so no tombstone can shadow them.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

from chat_history.storage.paging import membership_records
from chat_shared.ingest import IngestedMessage
from chat_shared.membership import MembershipRecord
from chat_shared.ports.history import (
    Conversation,
    ConversationKind,
    Member,
    Role,
    SeqConflict,
    bucket_of,
    message_row,
)
from chat_shared.settings import ChatSettings
from chat_shared.store.cassandra import CassandraStore

T = TypeVar("T")

# Statements in flight at once for one call (a batch of messages, a listing).
_CONCURRENCY = 64

# Partition keys per multi-partition ``IN ?`` read: one round trip for a listing's
# worth of ids, while keeping the coordinator's fan-out (and its memory) small.
_IN_CHUNK = 100

_MESSAGES_BETWEEN = (
    "SELECT conversation_id, seq, id, sender_id, body, client_id, created_ms FROM messages"
    " WHERE conversation_id = ? AND bucket = ? AND seq >= ? AND seq <= ?"
)
_MESSAGE_AT = (
    "SELECT conversation_id, seq, id, sender_id, body, client_id, created_ms FROM messages"
    " WHERE conversation_id = ? AND bucket = ? AND seq = ?"
)


def _conversation(row: dict[str, Any]) -> Conversation:
    return Conversation(
        id=row["id"],
        kind=cast(ConversationKind, row["kind"]),
        name=row["name"],
        created_at_ms=int(row["created_ms"]),
        updated_at_ms=int(row["updated_ms"]),
    )


def _member(row: dict[str, Any]) -> Member:
    return Member(
        user_id=row["user_id"], role=cast(Role, row["role"]), joined_at_ms=int(row["joined_ms"])
    )


def _message(row: dict[str, Any]) -> IngestedMessage:
    return IngestedMessage(
        id=row["id"],
        conversation_id=row["conversation_id"],
        seq=int(row["seq"]),
        sender_id=row["sender_id"],
        body=row["body"],
        client_id=row["client_id"],
        created_at_ms=int(row["created_ms"]),
    )


async def _bounded(calls: Iterable[Awaitable[T]]) -> list[T]:
    limit = asyncio.Semaphore(_CONCURRENCY)

    async def run(call: Awaitable[T]) -> T:
        async with limit:
            return await call

    return list(await asyncio.gather(*(run(c) for c in calls)))


def _chunks(ids: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(ids))
    return [unique[i : i + _IN_CHUNK] for i in range(0, len(unique), _IN_CHUNK)]


class CassandraHistoryStore:
    def __init__(self, store: CassandraStore, *, bucket_size: int) -> None:
        self.store = store
        self.bucket_size = bucket_size

    @classmethod
    async def connect(cls, settings: ChatSettings, *, bucket_size: int) -> CassandraHistoryStore:
        store = await asyncio.to_thread(
            CassandraStore.connect, settings, keyspace=settings.cassandra_keyspace
        )
        return cls(store, bucket_size=bucket_size)

    async def _run(self, cql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return await self.store.execute(cql, params)

    async def _run_in(
        self, cql: str, ids: Sequence[str], after: Sequence[Any] = ()
    ) -> list[dict[str, Any]]:
        """Run a query whose first marker is ``IN ?`` once per chunk of ``ids``."""
        found = await _bounded(self._run(cql, (chunk, *after)) for chunk in _chunks(ids))
        return [row for rows in found for row in rows]

    # Conversations -----------------------------------------------------------------

    async def create_conversation(
        self, conversation: Conversation, members: Sequence[Member]
    ) -> None:
        # Members first, the conversation row last: a reader that finds the row finds
        # its members; a crash in between is repaired by the caller's retry.
        await self._write_members(conversation.id, members)
        await self._run(
            "INSERT INTO conversations (id, kind, name, created_ms, updated_ms)"
            " VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?",
            (
                conversation.id,
                conversation.kind,
                conversation.name,
                conversation.created_at_ms,
                conversation.updated_at_ms,
                # Same clock as _touch: updated_ms keeps the latest activity.
                conversation.updated_at_ms * 1000,
            ),
        )

    async def _write_members(self, conversation_id: str, members: Sequence[Member]) -> None:
        # Every write to a conversation_members row is a lightweight transaction
        # (insert IF NOT EXISTS, update and delete IF EXISTS): Paxos orders them, and a
        # plain write mixed in could land under a removal's tombstone or bring back a
        # removed member. A member already there keeps their role and join time, and
        # the per-user index gets the join time that is stored.
        async def add(m: Member) -> None:
            rows = await self.store.execute(
                "INSERT INTO conversation_members (conversation_id, user_id, role, joined_ms)"
                " VALUES (?, ?, ?, ?) IF NOT EXISTS",
                (conversation_id, m.user_id, m.role, m.joined_at_ms),
                idempotent=False,
            )
            row = rows[0]
            joined = m.joined_at_ms if row["[applied]"] else int(row["joined_ms"])
            await self._run(
                "INSERT INTO user_conversations (user_id, conversation_id, joined_ms)"
                " VALUES (?, ?, ?)",
                (m.user_id, conversation_id, joined),
            )

        await _bounded(add(m) for m in members)

    async def claim_direct_pair(self, pair_key: str, conversation_id: str) -> str:
        # A lightweight transaction, never retried by the driver; a retry of ours that
        # finds our own claim reads it back as "not applied" with our id, which is right.
        rows = await self.store.execute(
            "INSERT INTO direct_conversations (pair, conversation_id) VALUES (?, ?) IF NOT EXISTS",
            (pair_key, conversation_id),
            idempotent=False,
        )
        row = rows[0]
        if row.get("[applied]"):
            return conversation_id
        return str(row["conversation_id"])

    async def direct_conversation_id(self, pair_key: str) -> str | None:
        rows = await self._run(
            "SELECT conversation_id FROM direct_conversations WHERE pair = ?", (pair_key,)
        )
        return str(rows[0]["conversation_id"]) if rows else None

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        found = await self.get_conversations([conversation_id])
        return found[0] if found else None

    async def get_conversations(self, conversation_ids: Sequence[str]) -> list[Conversation]:
        rows = await self._run_in(
            "SELECT id, kind, name, created_ms, updated_ms FROM conversations WHERE id IN ?",
            conversation_ids,
        )
        # A row holding only updated_ms is a touch that raced a failed creation.
        return [_conversation(r) for r in rows if r["kind"] is not None]

    async def members(self, conversation_id: str) -> list[Member]:
        return (await self.members_of_many([conversation_id])).get(conversation_id, [])

    async def members_of_many(self, conversation_ids: Sequence[str]) -> dict[str, list[Member]]:
        rows = await self._run_in(
            "SELECT conversation_id, user_id, role, joined_ms FROM conversation_members"
            " WHERE conversation_id IN ?",
            conversation_ids,
        )
        out: dict[str, list[Member]] = defaultdict(list)
        for r in rows:
            out[r["conversation_id"]].append(_member(r))
        for members in out.values():
            members.sort(key=lambda m: (m.joined_at_ms, m.user_id))
        return dict(out)

    async def add_members(
        self, conversation_id: str, members: Sequence[Member], updated_at_ms: int
    ) -> None:
        await self._write_members(conversation_id, members)
        await self._touch(conversation_id, updated_at_ms)

    async def remove_member(self, conversation_id: str, user_id: str, updated_at_ms: int) -> None:
        # The per-user index first: a crash in between leaves a member who does not
        # list the conversation, never a listed conversation the user cannot open.
        await self._run(
            "DELETE FROM user_conversations WHERE user_id = ? AND conversation_id = ?",
            (user_id, conversation_id),
        )
        await self.store.execute(
            "DELETE FROM conversation_members WHERE conversation_id = ? AND user_id = ? IF EXISTS",
            (conversation_id, user_id),
            idempotent=False,
        )
        await self._touch(conversation_id, updated_at_ms)

    async def _touch(self, conversation_id: str, updated_at_ms: int) -> None:
        await self._run(
            "UPDATE conversations USING TIMESTAMP ? SET updated_ms = ? WHERE id = ?",
            (updated_at_ms * 1000, updated_at_ms, conversation_id),
        )

    async def set_role(self, conversation_id: str, user_id: str, role: Role) -> bool:
        # IF EXISTS: a plain UPDATE is an upsert and would bring a removed member back.
        rows = await self.store.execute(
            "UPDATE conversation_members SET role = ? WHERE conversation_id = ? AND user_id = ?"
            " IF EXISTS",
            (role, conversation_id, user_id),
            idempotent=False,
        )
        return bool(rows[0]["[applied]"])

    async def conversation_ids_of(self, user_id: str) -> list[str]:
        rows = await self._run(
            "SELECT conversation_id FROM user_conversations WHERE user_id = ?", (user_id,)
        )
        return [str(r["conversation_id"]) for r in rows]

    def membership_pages(self, page_size: int) -> AsyncIterator[list[MembershipRecord]]:
        # A paged scan in token order; one partition's rows come together.
        async def rows() -> AsyncIterator[list[tuple[str, str]]]:
            async for page in self.store.pages(
                "SELECT conversation_id, user_id FROM conversation_members",
                fetch_size=page_size,
            ):
                yield [(r["conversation_id"], r["user_id"]) for r in page]

        return membership_records(rows(), self._kinds)

    async def _kinds(self, conversation_ids: list[str]) -> dict[str, str]:
        return {c.id: c.kind for c in await self.get_conversations(conversation_ids)}

    # Messages ----------------------------------------------------------------------

    async def save_messages(self, messages: Sequence[IngestedMessage]) -> list[SeqConflict]:
        if not messages:
            return []
        outcomes = await _bounded(self._insert_first_writer_wins(m) for m in messages)
        conflicts = [c for c in outcomes if c is not None]
        # Only after the rows are stored: progress must never point past them.
        await _bounded(self._advance_progress(cid) for cid in {m.conversation_id for m in messages})
        return conflicts

    async def _insert_first_writer_wins(self, m: IngestedMessage) -> SeqConflict | None:
        # IF NOT EXISTS: a plain INSERT is an upsert and would silently replace a
        # stored message that a second writer was wrongly handed the same seq for.
        # Not idempotent for the driver (never retried blindly); retrying it
        # ourselves is safe because the answer is checked against our id: a replay
        # of our own write comes back "not applied" with our id in the row.
        rows = await self.store.execute(
            "INSERT INTO messages (conversation_id, bucket, seq, id, sender_id, body,"
            " client_id, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
            message_row(m, self.bucket_size),
            idempotent=False,
        )
        row = rows[0]
        if row["[applied]"] or row["id"] == m.id:
            return None
        return SeqConflict(m, stored_id=str(row["id"]))

    async def _advance_progress(self, conversation_id: str) -> None:
        """Raise progress over the stored seqs contiguous with it.

        Reads the current progress, then the seqs above it bucket by bucket, and
        stops at the first hole. Rows are only ever added, so what this sees is a
        lower bound of the truth: concurrent writers may each compute a different
        value, none of them too high, and ``USING TIMESTAMP = seq`` keeps the
        largest whatever order they land in.
        """
        progress = await self.last_seq(conversation_id)
        reached = progress
        bucket = bucket_of(reached + 1, self.bucket_size)
        while True:
            rows = await self.store.execute(
                "SELECT seq FROM messages WHERE conversation_id = ? AND bucket = ?"
                " AND seq > ? ORDER BY seq ASC",
                (conversation_id, bucket, reached),
            )
            for row in rows:
                if row["seq"] != reached + 1:
                    break
                reached += 1
            else:
                if reached == (bucket + 1) * self.bucket_size - 1:
                    bucket += 1  # the whole bucket is there: the next one may go on
                    continue
            break
        if reached > progress:
            await self._run(
                "UPDATE conversation_progress USING TIMESTAMP ? SET last_seq = ?"
                " WHERE conversation_id = ?",
                (reached, reached, conversation_id),
            )

    async def last_seq(self, conversation_id: str) -> int:
        return (await self.last_seqs([conversation_id]))[conversation_id]

    async def last_seqs(self, conversation_ids: Sequence[str]) -> dict[str, int]:
        rows = await self._run_in(
            "SELECT conversation_id, last_seq FROM conversation_progress"
            " WHERE conversation_id IN ?",
            conversation_ids,
        )
        stored = {r["conversation_id"]: int(r["last_seq"] or 0) for r in rows}
        return {cid: stored.get(cid, 0) for cid in conversation_ids}

    async def messages_between(
        self, conversation_id: str, low_seq: int, high_seq: int
    ) -> list[IngestedMessage]:
        if high_seq < low_seq:
            return []
        out: list[IngestedMessage] = []
        first = bucket_of(low_seq, self.bucket_size)
        last = bucket_of(high_seq, self.bucket_size)
        for bucket in range(first, last + 1):
            rows = await self._run(
                _MESSAGES_BETWEEN,
                (conversation_id, bucket, low_seq, high_seq),
            )
            out.extend(_message(r) for r in rows)
        out.sort(key=lambda m: m.seq)
        return out

    async def messages_at(self, wanted: Mapping[str, int]) -> dict[str, IngestedMessage]:
        # One point read per conversation, run concurrently: a multi-column IN cannot
        # name a different (conversation, bucket) partition and seq for each id. Each
        # read goes straight to a replica of its partition (token-aware routing).
        items = [(cid, seq) for cid, seq in wanted.items() if seq > 0]

        async def one(cid: str, seq: int) -> list[dict[str, Any]]:
            return await self._run(
                _MESSAGE_AT,
                (cid, bucket_of(seq, self.bucket_size), seq),
            )

        found = await _bounded(one(cid, seq) for cid, seq in items)
        return {cid: _message(rows[0]) for (cid, _), rows in zip(items, found, strict=True) if rows}

    # Read markers ------------------------------------------------------------------

    async def advance_read(self, user_id: str, conversation_id: str, seq: int) -> None:
        if seq <= 0:
            return
        await self._run(
            "UPDATE read_state USING TIMESTAMP ? SET last_read_seq = ?"
            " WHERE user_id = ? AND conversation_id = ?",
            (seq, seq, user_id, conversation_id),
        )

    async def read_seq(self, user_id: str, conversation_id: str) -> int:
        rows = await self._run(
            "SELECT last_read_seq FROM read_state WHERE user_id = ? AND conversation_id = ?",
            (user_id, conversation_id),
        )
        return int(rows[0]["last_read_seq"]) if rows else 0

    async def read_markers(self, conversation_id: str, user_ids: Sequence[str]) -> dict[str, int]:
        rows = await self._run_in(
            "SELECT user_id, last_read_seq FROM read_state"
            " WHERE user_id IN ? AND conversation_id = ?",
            user_ids,
            (conversation_id,),
        )
        stored = {r["user_id"]: int(r["last_read_seq"]) for r in rows}
        return {u: stored.get(u, 0) for u in user_ids}

    async def read_seqs(self, user_id: str) -> dict[str, int]:
        rows = await self._run(
            "SELECT conversation_id, last_read_seq FROM read_state WHERE user_id = ?",
            (user_id,),
        )
        return {str(r["conversation_id"]): int(r["last_read_seq"]) for r in rows}

    # Lifecycle ---------------------------------------------------------------------

    async def ping(self) -> None:
        await self.store.ping()

    async def close(self) -> None:
        await asyncio.to_thread(self.store.close)
