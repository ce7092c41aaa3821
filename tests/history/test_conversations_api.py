"""Conversations over HTTP: direct pairs, groups, members, listing, authorization."""

from __future__ import annotations

import asyncio
from typing import Any

from chat_history.settings import HistorySettings
from tests.history.conftest import Users
from tests.history.helpers import Api, UserDirectoryApp

PROBLEM = "application/problem+json"


def assert_problem(response: Any, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status


async def test_direct_conversation_is_one_per_pair(api: Api, users: Users) -> None:
    first = await api.direct(users.alice, users.bob)
    assert first.status_code == 201, first.text
    conversation = first.json()
    assert conversation["kind"] == "direct"
    assert conversation["name"] is None
    assert sorted(conversation["members"]) == sorted([users.alice, users.bob])
    assert conversation["last_seq"] == 0 and conversation["last_message"] is None

    again = await api.direct(users.alice, users.bob)
    assert again.status_code == 200
    assert again.json()["id"] == conversation["id"]
    from_peer = await api.direct(users.bob, users.alice)
    assert from_peer.status_code == 200
    assert from_peer.json()["id"] == conversation["id"]


async def test_concurrent_direct_creation_yields_one_conversation(api: Api, users: Users) -> None:
    answers = await asyncio.gather(
        *(api.direct(users.alice, users.bob) for _ in range(5)),
        *(api.direct(users.bob, users.alice) for _ in range(5)),
    )
    assert {a.json()["id"] for a in answers} == {answers[0].json()["id"]}
    assert sum(a.status_code == 201 for a in answers) == 1
    assert all(a.status_code in (200, 201) for a in answers)


async def test_direct_conversation_with_yourself_or_unknown_user_is_refused(
    api: Api, users: Users
) -> None:
    assert_problem(await api.direct(users.alice, users.alice), 422)
    assert_problem(await api.direct(users.alice, "01NOBODYNOBODYNOBODYNOBODY"), 422)
    two_peers = await api.call(
        "POST",
        "/v1/conversations",
        users.alice,
        json={"kind": "direct", "members": [users.bob, users.carol]},
    )
    assert_problem(two_peers, 422)


async def test_group_has_owner_and_members(api: Api, users: Users) -> None:
    group = await api.group(users.alice, [users.bob, users.carol, users.bob], name="  Team  ")
    assert group["kind"] == "group" and group["name"] == "Team"
    assert group["owner_id"] == users.alice
    assert group["members"] == [users.alice, *sorted([users.bob, users.carol])]
    fetched = await api.call("GET", f"/v1/conversations/{group['id']}", users.carol)
    assert fetched.status_code == 200
    assert fetched.json()["id"] == group["id"]


async def test_group_over_the_member_limit_or_with_unknown_users_is_refused(
    api: Api, users: Users, directory: UserDirectoryApp, settings: HistorySettings
) -> None:
    others = directory.add(settings.max_group_members)  # with the owner: one too many
    too_many = await api.call(
        "POST",
        "/v1/conversations",
        users.alice,
        json={"kind": "group", "name": "big", "members": others},
    )
    assert_problem(too_many, 422)
    at_limit = await api.group(users.alice, others[:-1], name="full")
    assert len(at_limit["members"]) == settings.max_group_members

    unknown = await api.call(
        "POST",
        "/v1/conversations",
        users.alice,
        json={"kind": "group", "name": "x", "members": [users.bob, "01UNKNOWNUNKNOWNUNKNOWN000"]},
    )
    assert_problem(unknown, 422)
    assert "01UNKNOWNUNKNOWNUNKNOWN000" in unknown.json()["detail"]


async def test_default_member_limit_is_one_hundred() -> None:
    assert HistorySettings.model_fields["max_group_members"].default == 100


async def test_only_the_owner_adds_members_and_only_to_groups(api: Api, users: Users) -> None:
    group = await api.group(users.alice, [users.bob])
    path = f"/v1/conversations/{group['id']}/members"
    by_member = await api.call("POST", path, users.bob, json={"user_ids": [users.carol]})
    assert_problem(by_member, 403)
    by_stranger = await api.call("POST", path, users.stranger, json={"user_ids": [users.carol]})
    assert_problem(by_stranger, 404)

    added = await api.call("POST", path, users.alice, json={"user_ids": [users.carol, users.bob]})
    assert added.status_code == 200, added.text
    members = added.json()["members"]
    assert members[:2] == [users.alice, users.bob] and members[2:] == [users.carol]

    direct = (await api.direct(users.alice, users.bob)).json()
    to_direct = await api.call(
        "POST",
        f"/v1/conversations/{direct['id']}/members",
        users.alice,
        json={"user_ids": [users.carol]},
    )
    assert_problem(to_direct, 422)


async def test_adding_past_the_limit_is_refused(
    api: Api, users: Users, directory: UserDirectoryApp, settings: HistorySettings
) -> None:
    group = await api.group(users.alice, directory.add(settings.max_group_members - 2))
    path = f"/v1/conversations/{group['id']}/members"
    assert (await api.call("POST", path, users.alice, json={"user_ids": [users.bob]})).is_success
    full = await api.call("POST", path, users.alice, json={"user_ids": [users.carol]})
    assert_problem(full, 422)


async def test_removing_members(api: Api, users: Users) -> None:
    group = await api.group(users.alice, [users.bob, users.carol, users.dave])
    base = f"/v1/conversations/{group['id']}"

    other = await api.call("DELETE", f"{base}/members/{users.dave}", users.bob)
    assert_problem(other, 403)
    left = await api.call("DELETE", f"{base}/members/{users.bob}", users.bob)
    assert left.status_code == 204
    removed = await api.call("DELETE", f"{base}/members/{users.dave}", users.alice)
    assert removed.status_code == 204
    assert_problem(await api.call("GET", base, users.bob), 404)
    assert_problem(await api.call("GET", base, users.dave), 404)
    assert_problem(await api.call("DELETE", f"{base}/members/{users.dave}", users.alice), 404)

    owner_leaves = await api.call("DELETE", f"{base}/members/{users.alice}", users.alice)
    assert owner_leaves.status_code == 204
    after = (await api.call("GET", base, users.carol)).json()
    assert after["members"] == [users.carol] and after["owner_id"] == users.carol


async def test_non_members_get_404_everywhere(api: Api, users: Users) -> None:
    group = await api.group(users.alice, [users.bob])
    base = f"/v1/conversations/{group['id']}"
    await api.send(users.alice, group["id"], "secret", "k1")
    for method, path, body in [
        ("GET", base, None),
        ("GET", f"{base}/messages", None),
        ("POST", f"{base}/messages", {"body": "hi", "client_id": "k2"}),
        ("POST", f"{base}/read", {"seq": 1}),
        ("POST", f"{base}/members", {"user_ids": [users.stranger]}),
        ("DELETE", f"{base}/members/{users.bob}", None),
    ]:
        response = await api.call(method, path, users.stranger, json=body)
        assert_problem(response, 404)
        assert "secret" not in response.text
    missing = await api.call("GET", "/v1/conversations/01NOSUCHCONVERSATION000000", users.alice)
    assert_problem(missing, 404)


async def test_requests_without_a_valid_token_get_401(api: Api, users: Users) -> None:
    assert_problem(await api.call("GET", "/v1/conversations", None), 401)
    bad = await api.http.get("/v1/conversations", headers={"Authorization": "Bearer nope"})
    assert_problem(bad, 401)
    expired = api.minter.token(users.alice, exp=1_000_000, iat=999_000)
    old = await api.http.get("/v1/conversations", headers={"Authorization": f"Bearer {expired}"})
    assert_problem(old, 401)


async def test_strict_request_bodies(api: Api, users: Users) -> None:
    for body in [
        {"kind": "group", "name": "x", "members": [], "admin": True},
        {"kind": "channel", "members": [users.bob]},
        {"kind": "group", "name": "", "members": []},
        {"kind": "group", "name": "x" * 101, "members": []},
        {"kind": "direct", "members": []},
        {"kind": "direct", "members": ["has,comma"]},
        {"kind": "group", "name": "x", "members": "not a list"},
    ]:
        assert_problem(await api.call("POST", "/v1/conversations", users.alice, json=body), 422)
    not_json = await api.call(
        "POST",
        "/v1/conversations",
        users.alice,
        content=b"{",
        headers={"content-type": "application/json"},
    )
    assert not_json.status_code in (400, 422)


async def test_listing_orders_by_latest_activity_with_unread_counts(api: Api, users: Users) -> None:
    first = await api.group(users.alice, [users.bob], name="first")
    second = await api.group(users.alice, [users.bob], name="second")
    direct = (await api.direct(users.bob, users.alice)).json()
    assert (await api.send(users.bob, first["id"], "one", "k1")).status_code == 201
    assert (await api.send(users.bob, first["id"], "two", "k2")).status_code == 201

    listed = (await api.call("GET", "/v1/conversations", users.alice)).json()["conversations"]
    assert [c["id"] for c in listed] == [first["id"], direct["id"], second["id"]]
    top = listed[0]
    assert top["last_seq"] == 2 and top["unread_count"] == 2
    assert top["last_message"]["body"] == "two" and top["last_message"]["seq"] == 2
    assert top["members"] == [users.alice, users.bob]
    assert {
        "id",
        "kind",
        "name",
        "members",
        "last_seq",
        "last_message",
        "unread_count",
        "updated_at",
    } <= top.keys()

    # Own messages count as read for their sender.
    bob_view = (await api.call("GET", "/v1/conversations", users.bob)).json()["conversations"]
    assert next(c for c in bob_view if c["id"] == first["id"])["unread_count"] == 0

    await api.send(users.alice, second["id"], "newest", "k3")
    listed = (await api.call("GET", "/v1/conversations", users.alice)).json()["conversations"]
    assert listed[0]["id"] == second["id"]
    stranger = (await api.call("GET", "/v1/conversations", users.stranger)).json()
    assert stranger == {"conversations": []}
