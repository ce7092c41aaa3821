"""Messages over HTTP: posting, idempotency, ordering under concurrency, pagination,
read markers, and the tail the consumer has not stored yet."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from chat_history.storage.sqlite import SqliteHistoryStore
from tests.history.conftest import Running, StartHistory, Users
from tests.history.helpers import Api, UserDirectoryApp
from tests.history.test_conversations_api import assert_problem
from tests.support.tokens import TokenMinter


async def wait_stored(store: SqliteHistoryStore, conversation_id: str, seq: int) -> None:
    """Poll the store until the consumer (another event loop) has stored up to seq."""
    deadline = time.monotonic() + 20
    while await store.last_seq(conversation_id) < seq:
        assert time.monotonic() < deadline, "the consumer did not store the messages in time"
        await asyncio.sleep(0.02)


async def test_posted_message_has_the_contract_shape(api: Api, users: Users) -> None:
    group = await api.group(users.alice, [users.bob])
    response = await api.send(users.alice, group["id"], "hello <b>world</b> ' --", "c-1")
    assert response.status_code == 201, response.text
    message = response.json()
    assert set(message) == {
        "id",
        "conversation_id",
        "seq",
        "sender_id",
        "body",
        "client_id",
        "created_at",
    }
    assert message["seq"] == 1 and message["sender_id"] == users.alice
    assert message["conversation_id"] == group["id"] and message["client_id"] == "c-1"
    assert message["body"] == "hello <b>world</b> ' --"
    assert message["created_at"].endswith("Z") and "T" in message["created_at"]
    assert "Idempotent-Replayed" not in response.headers


async def test_retry_with_the_same_client_id_returns_the_original(api: Api, users: Users) -> None:
    group = await api.group(users.alice, [users.bob])
    first = await api.send(users.alice, group["id"], "once", "same")
    again = await api.send(users.alice, group["id"], "once", "same")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other_sender = await api.send(users.bob, group["id"], "mine", "same")
    assert other_sender.json()["seq"] == 2


async def test_invalid_message_bodies(api: Api, users: Users, history: Running) -> None:
    group = await api.group(users.alice, [users.bob])
    too_long = "x" * (history.settings.max_message_chars + 1)
    assert_problem(await api.send(users.alice, group["id"], "", "k1"), 422)
    assert_problem(await api.send(users.alice, group["id"], " \n\t", "k2"), 422)
    assert_problem(await api.send(users.alice, group["id"], too_long, "k3"), 413)
    assert_problem(await api.send(users.alice, group["id"], "ok", "bad id"), 422)
    assert_problem(await api.send(users.alice, group["id"], "ok", "k" * 65), 422)
    extra = await api.call(
        "POST",
        f"/v1/conversations/{group['id']}/messages",
        users.alice,
        json={"body": "x", "client_id": "k4", "seq": 9},
    )
    assert_problem(extra, 422)
    listed = (await api.messages(users.alice, group["id"])).json()
    assert listed == {"messages": [], "has_more": False}


async def test_concurrent_senders_get_gapless_seqs_and_retries_change_nothing(
    api: Api, directory: UserDirectoryApp, users: Users, stored: SqliteHistoryStore
) -> None:
    senders = [users.alice, *directory.add(19)]
    group = await api.group(users.alice, senders[1:], name="busy")
    per_sender = 5

    async def send_all(sender: str) -> list[dict[str, Any]]:
        sent = []
        for n in range(per_sender):
            response = await api.send(sender, group["id"], f"{sender} #{n}", f"{sender[-8:]}-{n}")
            assert response.status_code == 201, response.text
            sent.append(response.json())
        return sent

    first = [m for batch in await asyncio.gather(*map(send_all, senders)) for m in batch]
    total = len(senders) * per_sender
    assert sorted(m["seq"] for m in first) == list(range(1, total + 1))

    retried = [m for batch in await asyncio.gather(*map(send_all, senders)) for m in batch]
    assert sorted(retried, key=lambda m: m["seq"]) == sorted(first, key=lambda m: m["seq"])

    page = (await api.messages(users.alice, group["id"], after_seq=0, limit=200)).json()
    assert [m["seq"] for m in page["messages"]] == list(range(1, total + 1))
    assert page["has_more"] is False
    await wait_stored(stored, group["id"], total)
    rows = await stored.messages_between(group["id"], 1, 10 * total)
    assert [m.seq for m in rows] == list(range(1, total + 1))
    assert {m.id for m in rows} == {m["id"] for m in first}


async def test_pagination_directions_and_has_more(api: Api, users: Users) -> None:
    group = await api.group(users.alice, [users.bob])
    for n in range(1, 8):
        assert (await api.send(users.alice, group["id"], f"m{n}", f"k{n}")).status_code == 201

    async def seqs(**params: Any) -> tuple[list[int], bool]:
        response = await api.messages(users.bob, group["id"], **params)
        assert response.status_code == 200, response.text
        body = response.json()
        return [m["seq"] for m in body["messages"]], body["has_more"]

    assert await seqs() == ([7, 6, 5, 4, 3, 2, 1], False)
    assert await seqs(limit=3) == ([7, 6, 5], True)
    assert await seqs(before_seq=5, limit=3) == ([4, 3, 2], True)
    assert await seqs(before_seq=3, limit=3) == ([2, 1], False)
    assert await seqs(before_seq=1) == ([], False)
    assert await seqs(after_seq=0, limit=3) == ([1, 2, 3], True)
    assert await seqs(after_seq=4, limit=3) == ([5, 6, 7], False)
    assert await seqs(after_seq=7) == ([], False)
    assert await seqs(before_seq=100, limit=2) == ([7, 6], True)


async def test_pagination_parameters_out_of_range_are_refused(api: Api, users: Users) -> None:
    group = await api.group(users.alice, [users.bob])
    for params in [
        {"limit": 0},
        {"limit": 201},
        {"limit": "ten"},
        {"before_seq": 0},
        {"after_seq": -1},
        {"before_seq": 5, "after_seq": 1},
        {"before_seq": 2**60},
    ]:
        assert_problem(await api.messages(users.alice, group["id"], **params), 422)
    assert (await api.messages(users.alice, group["id"], limit=200)).status_code == 200
    assert (await api.messages(users.alice, group["id"], limit=1)).status_code == 200


async def test_read_markers_move_forward_only(api: Api, users: Users) -> None:
    group = await api.group(users.alice, [users.bob])
    for n in range(1, 4):
        await api.send(users.alice, group["id"], f"m{n}", f"k{n}")
    read = f"/v1/conversations/{group['id']}/read"

    async def unread(user: str) -> int:
        response = await api.call("GET", f"/v1/conversations/{group['id']}", user)
        count: int = response.json()["unread_count"]
        return count

    assert await unread(users.bob) == 3 and await unread(users.alice) == 0
    assert (await api.call("POST", read, users.bob, json={"seq": 2})).status_code == 204
    assert await unread(users.bob) == 1
    assert (await api.call("POST", read, users.bob, json={"seq": 1})).status_code == 204
    assert await unread(users.bob) == 1, "a marker never moves back"
    assert_problem(await api.call("POST", read, users.bob, json={"seq": 4}), 422)
    assert_problem(await api.call("POST", read, users.bob, json={"seq": -1}), 422)
    assert_problem(await api.call("POST", read, users.bob, json={"seq": "2"}), 422)
    assert (await api.call("POST", read, users.bob, json={"seq": 3})).status_code == 204
    assert await unread(users.bob) == 0
    detail = (await api.call("GET", f"/v1/conversations/{group['id']}", users.alice)).json()
    assert detail["read_markers"] == {users.alice: 3, users.bob: 3}
    listing = (await api.call("GET", "/v1/conversations", users.alice)).json()
    assert listing["conversations"][0]["read_markers"] is None


async def test_messages_not_yet_stored_are_merged_from_the_stream(
    start_history: StartHistory, minter: TokenMinter, users: Users, stored: SqliteHistoryStore
) -> None:
    running = start_history(consumer_enabled=False)
    api = Api(running.url, minter)
    try:
        group = await api.group(users.alice, [users.bob])
        sent = [
            (await api.send(users.alice, group["id"], f"m{n}", f"k{n}")).json() for n in range(1, 6)
        ]
        assert await stored.last_seq(group["id"]) == 0, "nothing is stored yet"

        page = (await api.messages(users.bob, group["id"])).json()
        assert page["messages"] == sent[::-1]
        older = (await api.messages(users.bob, group["id"], before_seq=3)).json()
        assert older["messages"] == [sent[1], sent[0]]
        listed = (await api.call("GET", "/v1/conversations", users.bob)).json()
        assert listed["conversations"][0]["last_message"] == sent[-1]
        assert listed["conversations"][0]["last_seq"] == 5
        read = await api.call(
            "POST", f"/v1/conversations/{group['id']}/read", users.bob, json={"seq": 5}
        )
        assert read.status_code == 204
    finally:
        await api.close()

    # Another process stores them: the answers do not change.
    persisting = start_history()
    api = Api(persisting.url, minter)
    try:
        await wait_stored(stored, group["id"], 5)
        assert (await api.messages(users.bob, group["id"])).json()["messages"] == sent[::-1]
    finally:
        await api.close()
