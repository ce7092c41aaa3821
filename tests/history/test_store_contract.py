"""The history store port, engine by engine: the same cases on SQLite and on a real
Cassandra node (LOCAL_QUORUM, as in production).

Every adapter must give the same answers; the domain never knows which one it has.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from chat_history.settings import HistorySettings
from chat_history.storage.cassandra import CassandraHistoryStore
from chat_history.storage.sqlite import SqliteHistoryStore
from chat_shared.ingest import IngestedMessage
from chat_shared.membership import MembershipRecord
from chat_shared.ports.history import (
    Conversation,
    HistoryStore,
    Member,
    SeqConflict,
    direct_pair_key,
)
from chat_shared.store.migrate import migrate_cassandra, migrate_sqlite, sqlite_path
from tests.conftest import CassandraEndpoint

BUCKET = 10  # small, so a few messages cross partition boundaries


@pytest.fixture(params=["sqlite", "cassandra"])
async def store(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[HistoryStore]:
    if request.param == "sqlite":
        settings = HistorySettings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
        migrate_sqlite(settings, "history")
        sqlite = SqliteHistoryStore(sqlite_path(settings, "history"), bucket_size=BUCKET)
        yield sqlite
        await sqlite.close()
        return
    keyspace = f"history_test_{uuid.uuid4().hex[:12]}"
    cassandra_node: CassandraEndpoint = request.getfixturevalue("cassandra")
    settings = HistorySettings(_env_file=None, **cassandra_node.settings(keyspace))  # type: ignore[call-arg,arg-type]
    await migrate_cassandra(settings, "history")
    cassandra = await CassandraHistoryStore.connect(settings, bucket_size=BUCKET)
    yield cassandra
    await cassandra.store.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", prepared=False)
    await cassandra.close()


def message(conversation: str, seq: int, body: str = "") -> IngestedMessage:
    return IngestedMessage(
        id=f"M{conversation}{seq:06d}",
        conversation_id=conversation,
        seq=seq,
        sender_id="u1",
        body=body or f"message {seq}",
        client_id=f"k{seq}",
        created_at_ms=1_700_000_000_000 + seq,
    )


def group(conversation_id: str = "c1", at: int = 1000) -> Conversation:
    return Conversation(conversation_id, "group", "team", at, at)


async def test_conversation_round_trip(store: HistoryStore) -> None:
    members = [
        Member("owner", "owner", 1000),
        Member("b", "member", 1000),
        Member("a", "member", 1001),
    ]
    await store.create_conversation(group(), members)
    await store.create_conversation(group(), members)  # idempotent
    assert await store.get_conversation("c1") == group()
    assert await store.get_conversation("nope") is None
    assert await store.members("c1") == [members[1], members[0], members[2]]
    assert await store.conversation_ids_of("a") == ["c1"]
    assert await store.get_conversations(["c1", "nope"]) == [group()]
    assert await store.members_of_many(["c1", "nope"]) == {"c1": await store.members("c1")}


async def test_adding_an_existing_member_keeps_their_role_and_join_time(
    store: HistoryStore,
) -> None:
    await store.create_conversation(group(), [Member("owner", "owner", 1000)])
    await store.add_members("c1", [Member("owner", "member", 5000)], 5000)
    await store.create_conversation(group(), [Member("owner", "member", 6000)])  # a retry
    assert await store.members("c1") == [Member("owner", "owner", 1000)]


async def test_a_role_change_never_brings_back_a_removed_member(store: HistoryStore) -> None:
    await store.create_conversation(
        group(), [Member("owner", "owner", 1000), Member("a", "member", 1000)]
    )
    await store.remove_member("c1", "a", 2000)
    assert await store.set_role("c1", "a", "owner") is False
    assert await store.members("c1") == [Member("owner", "owner", 1000)]
    assert await store.set_role("c1", "owner", "member") is True
    assert await store.members("c1") == [Member("owner", "member", 1000)]


async def test_a_removed_member_can_be_added_again(store: HistoryStore) -> None:
    await store.create_conversation(
        group(), [Member("owner", "owner", 1000), Member("a", "member", 1000)]
    )
    await store.remove_member("c1", "a", 2000)
    await store.remove_member("c1", "a", 2100)  # a retry removes nothing more
    await store.add_members("c1", [Member("a", "member", 3000)], 3000)
    assert await store.members("c1") == [
        Member("owner", "owner", 1000),
        Member("a", "member", 3000),
    ]
    assert await store.conversation_ids_of("a") == ["c1"]


async def test_listing_many_conversations_costs_a_few_statements(store: HistoryStore) -> None:
    ids = [f"c{i:03d}" for i in range(120)]  # more than one IN chunk
    await asyncio.gather(
        *(store.create_conversation(group(cid), [Member("a", "owner", 1000)]) for cid in ids)
    )
    await store.save_messages([message(cid, 1) for cid in ids[:7]])
    await store.advance_read("a", ids[0], 1)
    sent = store.store.statements_sent if isinstance(store, CassandraHistoryStore) else 0

    assert sorted(c.id for c in await store.get_conversations([*ids, "nope"])) == ids
    members = await store.members_of_many(ids)
    assert members == {cid: [Member("a", "owner", 1000)] for cid in ids}
    assert await store.last_seqs(ids) == {cid: int(cid < "c007") for cid in ids}
    assert await store.read_markers(ids[0], ["a", "b"]) == {"a": 1, "b": 0}

    if isinstance(store, CassandraHistoryStore):
        # Two chunks per listing query and one for the markers, not one per id.
        assert store.store.statements_sent - sent == 2 + 2 + 2 + 1


async def test_membership_changes(store: HistoryStore) -> None:
    await store.create_conversation(group(), [Member("owner", "owner", 1000)])
    await store.add_members("c1", [Member("a", "member", 2000), Member("b", "member", 2000)], 2000)
    assert [m.user_id for m in await store.members("c1")] == ["owner", "a", "b"]
    conversation = await store.get_conversation("c1")
    assert conversation is not None and conversation.updated_at_ms == 2000

    await store.remove_member("c1", "owner", 3000)
    await store.set_role("c1", "a", "owner")
    assert await store.members("c1") == [Member("a", "owner", 2000), Member("b", "member", 2000)]
    assert await store.conversation_ids_of("owner") == []
    await store.remove_member("c1", "a", 2500)  # an older clock never moves updated_at back
    conversation = await store.get_conversation("c1")
    assert conversation is not None and conversation.updated_at_ms == 3000

    await store.create_conversation(
        Conversation("c2", "direct", None, 1, 1),
        [Member("x", "member", 1), Member("y", "member", 1)],
    )
    await store.create_conversation(
        group("c3"), [Member(u, "member", 1) for u in ("p", "q", "r", "s", "t")]
    )
    pages = [page async for page in store.membership_pages(2)]  # pages end mid-conversation
    assert len(pages) >= 3
    records = sorted((r for page in pages for r in page), key=lambda r: r.conversation_id)
    assert records == [
        MembershipRecord("c1", "group", frozenset({"b"})),
        MembershipRecord("c2", "direct", frozenset({"x", "y"})),
        MembershipRecord("c3", "group", frozenset({"p", "q", "r", "s", "t"})),
    ]


async def test_direct_pair_has_one_winner(store: HistoryStore) -> None:
    pair = direct_pair_key("alice", "bob")
    assert pair == direct_pair_key("bob", "alice")
    assert await store.direct_conversation_id(pair) is None
    winners = await asyncio.gather(*(store.claim_direct_pair(pair, f"c{n}") for n in range(8)))
    assert len(set(winners)) == 1
    assert await store.direct_conversation_id(pair) == winners[0]
    assert await store.claim_direct_pair(pair, "late") == winners[0]


async def test_saving_messages_is_idempotent_and_keeps_them_verbatim(store: HistoryStore) -> None:
    body = "' OR 1=1; DROP TABLE messages; -- <script> \u202e \U0001f600 \x00 end"
    batch = [message("c1", seq) for seq in range(1, 26)] + [message("c2", 1, body)]
    await store.save_messages(batch)
    await store.save_messages(batch[5:15])  # a replay
    rows = await store.messages_between("c1", 1, 1000)
    assert rows == batch[:25]
    assert (await store.messages_between("c2", 1, 1))[0].body == body
    assert await store.last_seq("c1") == 25
    assert await store.last_seqs(["c1", "c2", "none"]) == {"c1": 25, "c2": 1, "none": 0}


async def test_ranges_cross_partitions(store: HistoryStore) -> None:
    await store.save_messages([message("c1", seq) for seq in range(1, 35)])
    for low, high in [(1, 9), (8, 12), (9, 10), (10, 19), (15, 24), (30, 40), (40, 50)]:
        rows = await store.messages_between("c1", low, high)
        assert [m.seq for m in rows] == list(range(low, min(high, 34) + 1))
    assert await store.messages_between("c1", 5, 4) == []
    found = await store.messages_at({"c1": 20, "missing": 3, "zero": 0})
    assert list(found) == ["c1"] and found["c1"].seq == 20


async def test_progress_is_the_highest_contiguous_stored_seq(store: HistoryStore) -> None:
    # Progress tells readers "everything up to here is stored": it must never point
    # past a hole, whatever order batches land in.
    await store.save_messages([message("c1", seq) for seq in (1, 2, 4, 5)])
    assert await store.last_seq("c1") == 2
    await store.save_messages([message("c1", 7)])
    assert await store.last_seq("c1") == 2
    await store.save_messages([message("c1", 3)])  # fills the first hole
    assert await store.last_seq("c1") == 5
    await store.save_messages([message("c1", 6)])  # and the second
    assert await store.last_seq("c1") == 7
    await store.save_messages([message("c1", 2)])  # a late replay moves nothing back
    assert await store.last_seq("c1") == 7


async def test_progress_walks_across_partitions(store: HistoryStore) -> None:
    await store.save_messages([message("c1", seq) for seq in range(1, 35) if seq != 1])
    assert await store.last_seq("c1") == 0
    await store.save_messages([message("c1", 1)])
    assert await store.last_seq("c1") == 34


async def test_a_reused_seq_never_replaces_the_stored_message(store: HistoryStore) -> None:
    first = message("c1", 5, "the first writer")
    await store.save_messages([message("c1", seq) for seq in range(1, 5)] + [first])
    impostor = replace(first, id="Mimpostor", body="a second message with the same seq")
    conflicts = await store.save_messages([impostor, message("c1", 6)])
    assert conflicts == [SeqConflict(impostor, stored_id=first.id)]
    assert await store.messages_between("c1", 5, 6) == [first, message("c1", 6)]
    assert await store.save_messages([first]) == []  # a replay is not a conflict
    assert await store.last_seq("c1") == 6


async def test_read_markers_move_forward_only(store: HistoryStore) -> None:
    assert await store.read_seq("u1", "c1") == 0
    await store.advance_read("u1", "c1", 5)
    await store.advance_read("u1", "c1", 2)
    await store.advance_read("u1", "c2", 1)
    assert await store.read_seq("u1", "c1") == 5
    assert await store.read_seqs("u1") == {"c1": 5, "c2": 1}
    assert await store.read_seqs("u2") == {}
    await asyncio.gather(*(store.advance_read("u2", "c1", n) for n in (4, 9, 1, 6)))
    assert await store.read_seq("u2", "c1") == 9
