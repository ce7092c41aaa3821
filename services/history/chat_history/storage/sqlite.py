"""The history store on SQLite (the embedded default).

The tables mirror the Cassandra ones, partitions included: messages are keyed by
``(conversation_id, bucket, seq)``, so the same page reads the same one or two
buckets on either engine. Writes run on the database's single writer thread, one
transaction each; reads run on reader threads (WAL).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import cast

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
from chat_shared.store.sqlite import SqliteDatabase

# SQLite caps host parameters per statement; big id lists are split.
_CHUNK = 500


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _in_list(sql: str, count: int) -> str:
    """Widen the query's ``IN (?)`` to ``count`` parameters (values stay bound)."""
    return sql.replace("IN (?)", "IN (" + ",".join("?" * count) + ")")


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"],
        kind=cast(ConversationKind, row["kind"]),
        name=row["name"],
        created_at_ms=row["created_ms"],
        updated_at_ms=row["updated_ms"],
    )


def _member(row: sqlite3.Row) -> Member:
    return Member(
        user_id=row["user_id"], role=cast(Role, row["role"]), joined_at_ms=row["joined_ms"]
    )


def _message(row: sqlite3.Row) -> IngestedMessage:
    return IngestedMessage(
        id=row["id"],
        conversation_id=row["conversation_id"],
        seq=row["seq"],
        sender_id=row["sender_id"],
        body=row["body"],
        client_id=row["client_id"],
        created_at_ms=row["created_ms"],
    )


_CONVERSATIONS_IN = (
    "SELECT id, kind, name, created_ms, updated_ms FROM conversations WHERE id IN (?)"
)
_MEMBERS_IN = (
    "SELECT conversation_id, user_id, role, joined_ms FROM conversation_members"
    " WHERE conversation_id IN (?) ORDER BY joined_ms, user_id"
)
_READ_MARKERS_IN = (
    "SELECT user_id, last_read_seq FROM read_state WHERE conversation_id = ? AND user_id IN (?)"
)
_PROGRESS_IN = (
    "SELECT conversation_id, last_seq FROM conversation_progress WHERE conversation_id IN (?)"
)
_MESSAGES_BETWEEN = (
    "SELECT conversation_id, seq, id, sender_id, body, client_id, created_ms FROM messages"
    " WHERE conversation_id = ? AND bucket = ? AND seq >= ? AND seq <= ? ORDER BY seq"
)
_MESSAGE_AT = (
    "SELECT conversation_id, seq, id, sender_id, body, client_id, created_ms FROM messages"
    " WHERE conversation_id = ? AND bucket = ? AND seq = ?"
)


class SqliteHistoryStore:
    def __init__(self, path: Path | str, *, bucket_size: int, readers: int = 4) -> None:
        self.db = SqliteDatabase(path, readers=readers)
        self.bucket_size = bucket_size

    # Conversations -----------------------------------------------------------------

    async def create_conversation(
        self, conversation: Conversation, members: Sequence[Member]
    ) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO conversations (id, kind, name, created_ms, updated_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    conversation.id,
                    conversation.kind,
                    conversation.name,
                    conversation.created_at_ms,
                    conversation.updated_at_ms,
                ),
            )
            _insert_members(conn, conversation.id, members)

        await self.db.write(write)

    async def claim_direct_pair(self, pair_key: str, conversation_id: str) -> str:
        def write(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT OR IGNORE INTO direct_conversations (pair, conversation_id) VALUES (?, ?)",
                (pair_key, conversation_id),
            )
            row = conn.execute(
                "SELECT conversation_id FROM direct_conversations WHERE pair = ?", (pair_key,)
            ).fetchone()
            return str(row["conversation_id"])

        return await self.db.write(write)

    async def direct_conversation_id(self, pair_key: str) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT conversation_id FROM direct_conversations WHERE pair = ?", (pair_key,)
            ).fetchone()
            return str(row["conversation_id"]) if row else None

        return await self.db.read(read)

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        found = await self.get_conversations([conversation_id])
        return found[0] if found else None

    async def get_conversations(self, conversation_ids: Sequence[str]) -> list[Conversation]:
        def read(conn: sqlite3.Connection) -> list[Conversation]:
            out: list[Conversation] = []
            for chunk in _chunks(conversation_ids):
                rows = conn.execute(_in_list(_CONVERSATIONS_IN, len(chunk)), tuple(chunk))
                out.extend(_conversation(row) for row in rows)
            return out

        return await self.db.read(read)

    async def members(self, conversation_id: str) -> list[Member]:
        return (await self.members_of_many([conversation_id])).get(conversation_id, [])

    async def members_of_many(self, conversation_ids: Sequence[str]) -> dict[str, list[Member]]:
        def read(conn: sqlite3.Connection) -> dict[str, list[Member]]:
            out: dict[str, list[Member]] = defaultdict(list)
            for chunk in _chunks(conversation_ids):
                rows = conn.execute(_in_list(_MEMBERS_IN, len(chunk)), tuple(chunk))
                for row in rows:
                    out[row["conversation_id"]].append(_member(row))
            return dict(out)

        return await self.db.read(read)

    async def add_members(
        self, conversation_id: str, members: Sequence[Member], updated_at_ms: int
    ) -> None:
        def write(conn: sqlite3.Connection) -> None:
            _insert_members(conn, conversation_id, members)
            _touch(conn, conversation_id, updated_at_ms)

        await self.db.write(write)

    async def remove_member(self, conversation_id: str, user_id: str, updated_at_ms: int) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM conversation_members WHERE conversation_id = ? AND user_id = ?",
                (conversation_id, user_id),
            )
            conn.execute(
                "DELETE FROM user_conversations WHERE user_id = ? AND conversation_id = ?",
                (user_id, conversation_id),
            )
            _touch(conn, conversation_id, updated_at_ms)

        await self.db.write(write)

    async def set_role(self, conversation_id: str, user_id: str, role: Role) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE conversation_members SET role = ?"
                    " WHERE conversation_id = ? AND user_id = ?",
                    (role, conversation_id, user_id),
                ).rowcount
                > 0
            )

        return await self.db.write(write)

    async def conversation_ids_of(self, user_id: str) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT conversation_id FROM user_conversations WHERE user_id = ?", (user_id,)
            )
            return [str(row["conversation_id"]) for row in rows]

        return await self.db.read(read)

    def membership_pages(self, page_size: int) -> AsyncIterator[list[MembershipRecord]]:
        # Keyset pages over the primary key, one short read each: the writer is never
        # held up by the scan.
        def page_after(
            after: tuple[str, str],
        ) -> Callable[[sqlite3.Connection], list[tuple[str, str]]]:
            def read(conn: sqlite3.Connection) -> list[tuple[str, str]]:
                rows = conn.execute(
                    "SELECT conversation_id, user_id FROM conversation_members"
                    " WHERE (conversation_id, user_id) > (?, ?)"
                    " ORDER BY conversation_id, user_id LIMIT ?",
                    (*after, page_size),
                )
                return [(str(r["conversation_id"]), str(r["user_id"])) for r in rows]

            return read

        async def rows() -> AsyncIterator[list[tuple[str, str]]]:
            after = ("", "")
            while page := await self.db.read(page_after(after)):
                yield page
                after = page[-1]

        return membership_records(rows(), self._kinds)

    async def _kinds(self, conversation_ids: list[str]) -> dict[str, str]:
        return {c.id: c.kind for c in await self.get_conversations(conversation_ids)}

    # Messages ----------------------------------------------------------------------

    async def save_messages(self, messages: Sequence[IngestedMessage]) -> list[SeqConflict]:
        if not messages:
            return []
        bucket_size = self.bucket_size

        def write(conn: sqlite3.Connection) -> list[SeqConflict]:
            # One transaction: the rows, the conflict check and the progress commit
            # together, so progress can never be seen ahead of the rows.
            conflicts: list[SeqConflict] = []
            for m in messages:
                inserted = conn.execute(
                    "INSERT OR IGNORE INTO messages (conversation_id, bucket, seq, id,"
                    " sender_id, body, client_id, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    message_row(m, bucket_size),
                ).rowcount
                if not inserted:
                    stored = conn.execute(
                        "SELECT id FROM messages WHERE conversation_id = ? AND bucket = ?"
                        " AND seq = ?",
                        (m.conversation_id, bucket_of(m.seq, bucket_size), m.seq),
                    ).fetchone()
                    if stored["id"] != m.id:
                        conflicts.append(SeqConflict(m, stored_id=stored["id"]))
            for conversation_id in {m.conversation_id for m in messages}:
                _advance_progress(conn, conversation_id, bucket_size)
            return conflicts

        return await self.db.write(write)

    async def last_seq(self, conversation_id: str) -> int:
        return (await self.last_seqs([conversation_id])).get(conversation_id, 0)

    async def last_seqs(self, conversation_ids: Sequence[str]) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            out = dict.fromkeys(conversation_ids, 0)
            for chunk in _chunks(conversation_ids):
                rows = conn.execute(_in_list(_PROGRESS_IN, len(chunk)), tuple(chunk))
                for row in rows:
                    out[row["conversation_id"]] = int(row["last_seq"])
            return out

        return await self.db.read(read)

    async def messages_between(
        self, conversation_id: str, low_seq: int, high_seq: int
    ) -> list[IngestedMessage]:
        if high_seq < low_seq:
            return []
        buckets = list(
            range(bucket_of(low_seq, self.bucket_size), bucket_of(high_seq, self.bucket_size) + 1)
        )

        def read(conn: sqlite3.Connection) -> list[IngestedMessage]:
            out: list[IngestedMessage] = []
            for bucket in buckets:  # one partition at a time, as on Cassandra
                rows = conn.execute(
                    _MESSAGES_BETWEEN,
                    (conversation_id, bucket, low_seq, high_seq),
                )
                out.extend(_message(row) for row in rows)
            return out

        return await self.db.read(read)

    async def messages_at(self, wanted: Mapping[str, int]) -> dict[str, IngestedMessage]:
        items = [(cid, seq) for cid, seq in wanted.items() if seq > 0]

        def read(conn: sqlite3.Connection) -> dict[str, IngestedMessage]:
            out: dict[str, IngestedMessage] = {}
            for cid, seq in items:
                row = conn.execute(
                    _MESSAGE_AT,
                    (cid, bucket_of(seq, self.bucket_size), seq),
                ).fetchone()
                if row is not None:
                    out[cid] = _message(row)
            return out

        return await self.db.read(read)

    # Read markers ------------------------------------------------------------------

    async def advance_read(self, user_id: str, conversation_id: str, seq: int) -> None:
        await self.db.write(
            lambda conn: conn.execute(
                "INSERT INTO read_state (user_id, conversation_id, last_read_seq)"
                " VALUES (?, ?, ?) ON CONFLICT (user_id, conversation_id) DO UPDATE"
                " SET last_read_seq = excluded.last_read_seq"
                " WHERE excluded.last_read_seq > read_state.last_read_seq",
                (user_id, conversation_id, seq),
            )
        )

    async def read_seq(self, user_id: str, conversation_id: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT last_read_seq FROM read_state WHERE user_id = ? AND conversation_id = ?",
                (user_id, conversation_id),
            ).fetchone()
            return int(row["last_read_seq"]) if row else 0

        return await self.db.read(read)

    async def read_markers(self, conversation_id: str, user_ids: Sequence[str]) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            stored: dict[str, int] = {}
            for chunk in _chunks(user_ids):
                rows = conn.execute(
                    _in_list(_READ_MARKERS_IN, len(chunk)), (conversation_id, *chunk)
                )
                stored.update((row["user_id"], int(row["last_read_seq"])) for row in rows)
            return {u: stored.get(u, 0) for u in user_ids}

        return await self.db.read(read)

    async def read_seqs(self, user_id: str) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT conversation_id, last_read_seq FROM read_state WHERE user_id = ?",
                (user_id,),
            )
            return {str(row["conversation_id"]): int(row["last_read_seq"]) for row in rows}

        return await self.db.read(read)

    # Lifecycle ---------------------------------------------------------------------

    async def ping(self) -> None:
        await self.db.read(lambda conn: conn.execute("SELECT 1 FROM conversations LIMIT 1"))

    async def close(self) -> None:
        await asyncio.to_thread(self.db.close)


def _insert_members(
    conn: sqlite3.Connection, conversation_id: str, members: Sequence[Member]
) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO conversation_members (conversation_id, user_id, role, joined_ms)"
        " VALUES (?, ?, ?, ?)",
        [(conversation_id, m.user_id, m.role, m.joined_at_ms) for m in members],
    )
    conn.executemany(
        "INSERT OR IGNORE INTO user_conversations (user_id, conversation_id, joined_ms)"
        " VALUES (?, ?, ?)",
        [(m.user_id, conversation_id, m.joined_at_ms) for m in members],
    )


def _touch(conn: sqlite3.Connection, conversation_id: str, updated_at_ms: int) -> None:
    conn.execute(
        "UPDATE conversations SET updated_ms = MAX(updated_ms, ?) WHERE id = ?",
        (updated_at_ms, conversation_id),
    )


def _advance_progress(conn: sqlite3.Connection, conversation_id: str, bucket_size: int) -> None:
    """Raise progress over every stored seq contiguous with it (inside the writer's
    transaction, so the rows it counts are the rows that commit)."""
    row = conn.execute(
        "SELECT last_seq FROM conversation_progress WHERE conversation_id = ?",
        (conversation_id,),
    ).fetchone()
    progress = int(row["last_seq"]) if row else 0
    reached = progress
    while True:
        seqs = conn.execute(
            # The bucket bound keeps this on the tail partitions, not the whole history.
            "SELECT seq FROM messages WHERE conversation_id = ? AND bucket >= ? AND seq > ?"
            " ORDER BY seq LIMIT 500",
            (conversation_id, bucket_of(reached + 1, bucket_size), reached),
        ).fetchall()
        for found in seqs:
            if found["seq"] != reached + 1:
                break
            reached += 1
        else:
            if len(seqs) == 500:
                continue
        break
    if reached > progress:
        conn.execute(
            "INSERT INTO conversation_progress (conversation_id, last_seq) VALUES (?, ?)"
            " ON CONFLICT (conversation_id) DO UPDATE SET last_seq = excluded.last_seq"
            " WHERE excluded.last_seq > conversation_progress.last_seq",
            (conversation_id, reached),
        )
