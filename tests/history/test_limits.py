"""REST writes are limited per user over every history process: 429 problem+json with
Retry-After, and another user is not affected."""

from __future__ import annotations

from tests.history.conftest import StartHistory, Users
from tests.history.helpers import Api
from tests.support.tokens import TokenMinter


async def test_message_posts_share_the_send_limit_over_two_processes(
    start_history: StartHistory, minter: TokenMinter, users: Users
) -> None:
    limits = {"send_rate": 0.1, "send_burst": 3}
    one = Api(start_history(**limits).url, minter)
    other = Api(start_history(**limits).url, minter)
    conversation = await one.group(users.alice, [users.bob])
    answers = [
        await api.send(users.alice, conversation["id"], "hi", f"k{n}")
        for n, api in enumerate([one, other, one, other, one])
    ]
    assert [a.status_code for a in answers] == [201, 201, 201, 429, 429]
    refused = answers[3]
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["status"] == 429
    # Bob's budget is his own.
    assert (await other.send(users.bob, conversation["id"], "me too", "b1")).status_code == 201
    await one.close()
    await other.close()


async def test_conversation_creation_is_limited(
    start_history: StartHistory, minter: TokenMinter, users: Users
) -> None:
    api = Api(start_history(conversations_per_minute=4).url, minter)  # a burst of 2
    made = [await api.direct(users.alice, peer) for peer in (users.bob, users.carol, users.dave)]
    assert [m.status_code for m in made] == [201, 201, 429]
    assert (await api.direct(users.bob, users.carol)).status_code == 201
    await api.close()


async def test_member_changes_count_as_writes(
    start_history: StartHistory, minter: TokenMinter, users: Users
) -> None:
    api = Api(start_history(rest_writes_per_second=0.1, rest_write_burst=2).url, minter)
    group = await api.group(users.alice, [users.bob])  # one write
    path = f"/v1/conversations/{group['id']}/members"
    first = await api.call("POST", path, users.alice, json={"user_ids": [users.carol]})
    second = await api.call("POST", path, users.alice, json={"user_ids": [users.dave]})
    assert (first.status_code, second.status_code) == (200, 429)
    assert int(second.headers["Retry-After"]) >= 1
    await api.close()
