"""POST /v1/auth/login and /v1/auth/token: sign-in, no account enumeration, throttling."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from chat_auth.throttle import login_name_key, pair_block_key


@pytest.fixture(params=["single", "cluster"])
def redis_topology(request: pytest.FixtureRequest) -> str:
    """The login throttle on one Valkey and on a Valkey Cluster."""
    return str(request.param)


PASSWORD = "correct horse battery"


async def test_login_by_username_or_email(api: Any) -> None:
    await api.signup("alice", email="Alice@Example.com")
    for login in ("alice", "ALICE", "alice@example.com", "ALICE@example.com"):
        pair = await api.login(login)
        assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert pair["token_type"] == "bearer"
        assert pair["expires_in"] == api.settings.access_token_ttl_seconds
        me = await api.http.get("/v1/users/me", headers=api.bearer(pair))
        assert me.json()["username"] == "alice"


async def test_oauth2_password_form_answers_like_login(api: Any) -> None:
    await api.signup("bob")
    response = await api.http.post(
        "/v1/auth/token", data={"grant_type": "password", "username": "bob", "password": PASSWORD}
    )
    assert response.status_code == 200
    pair = response.json()
    assert pair["token_type"] == "bearer"
    assert (await api.http.get("/v1/users/me", headers=api.bearer(pair))).status_code == 200
    wrong = await api.http.post("/v1/auth/token", data={"username": "bob", "password": "nope"})
    assert wrong.status_code == 401


async def test_unknown_user_and_wrong_password_get_the_same_answer(api: Any) -> None:
    await api.signup("carol")
    wrong = await api.http.post("/v1/auth/login", json={"login": "carol", "password": "bad!"})
    unknown = await api.http.post("/v1/auth/login", json={"login": "nobody", "password": "bad!"})
    unknown_email = await api.http.post(
        "/v1/auth/login", json={"login": "nobody@example.com", "password": "bad!"}
    )
    assert wrong.status_code == unknown.status_code == unknown_email.status_code == 401
    assert wrong.content == unknown.content == unknown_email.content
    assert wrong.headers["content-type"] == unknown.headers["content-type"]
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"]


async def test_unknown_user_costs_as_much_time_as_a_wrong_password(open_client: Any) -> None:
    # Without the stand-in verification an unknown login answers in ~1 ms against
    # tens of ms for a real argon2 check; the bound leaves room for a noisy machine.
    async with open_client(argon2_memory_kib=32 * 1024, argon2_time_cost=3) as api:
        await api.signup("dave")

        async def timed(login: str) -> float:
            started = time.perf_counter()
            response = await api.http.post(
                "/v1/auth/login", json={"login": login, "password": "wrong password"}
            )
            assert response.status_code == 401
            return time.perf_counter() - started

        wrong = [await timed("dave") for _ in range(5)]
        unknown = [await timed(f"ghost{i}") for i in range(5)]
        assert statistics.median(unknown) > 0.5 * statistics.median(wrong)


async def test_a_guessing_address_backs_off_and_the_owner_elsewhere_is_untouched(
    open_client: Any, redis: Redis
) -> None:
    async with open_client(login_free_failures=3) as attacker:
        await attacker.signup("erin")
        for _ in range(4):  # three free failures, then one that starts the backoff
            bad = await attacker.http.post(
                "/v1/auth/login", json={"login": "erin", "password": "x"}
            )
            assert bad.status_code == 401
        # Waiting: even the right password, from this address, gets a problem+json 429.
        waiting = await attacker.http.post(
            "/v1/auth/login", json={"login": "erin", "password": PASSWORD}
        )
        assert waiting.status_code == 429
        assert waiting.headers["content-type"] == "application/problem+json"
        assert waiting.headers["retry-after"] == "1"
        # The wait is a key with an expiry, never a permanent flag; it doubles per failure.
        block = pair_block_key(login_name_key("erin"), "203.0.113.10")
        assert 0 < await redis.pttl(block) <= 1000
        await redis.delete(block)
        assert (
            await attacker.http.post("/v1/auth/login", json={"login": "erin", "password": "x"})
        ).status_code == 401
        assert 1000 < await redis.pttl(block) <= 2000
    async with open_client(address="198.51.100.7", login_free_failures=3) as owner:
        await owner.login("erin")  # at once, from the owner's own address


async def test_a_name_guessed_from_many_addresses_slows_down_but_lets_the_owner_in(
    open_client: Any,
) -> None:
    limits = {"login_failures_per_account": 3, "login_account_delay_seconds": 0.3}
    for n in range(4):
        async with open_client(address=f"192.0.2.{n + 1}", **limits) as guesser:
            if n == 0:
                await guesser.signup("fay")
            bad = await guesser.http.post("/v1/auth/login", json={"login": "fay", "password": "x"})
            assert bad.status_code == 401
    async with open_client(address="198.51.100.9", **limits) as owner:
        begun = time.monotonic()
        await owner.login("fay")
        assert time.monotonic() - begun >= 0.3, "the account under attack was not slowed"


async def test_unknown_names_are_throttled_like_real_ones(open_client: Any) -> None:
    async with open_client(login_free_failures=2) as api:
        for _ in range(3):
            await api.http.post("/v1/auth/login", json={"login": "ghost", "password": "x"})
        response = await api.http.post("/v1/auth/login", json={"login": "ghost", "password": "x"})
        assert response.status_code == 429


async def test_login_names_are_canonical(open_client: Any) -> None:
    async with open_client(login_free_failures=2) as api:
        await api.signup("hugo")
        ok = await api.http.post("/v1/auth/login", json={"login": " HUGO ", "password": PASSWORD})
        assert ok.status_code == 200
        wide = "\uff48\uff55\uff47\uff4f"  # fullwidth letters fold to the same name
        for _ in range(3):
            await api.http.post("/v1/auth/login", json={"login": wide, "password": "x"})
        counted = await api.http.post("/v1/auth/login", json={"login": "Hugo", "password": "x"})
        assert counted.status_code == 429


async def test_a_successful_login_resets_the_name_counter(open_client: Any) -> None:
    async with open_client(login_free_failures=3) as api:
        await api.signup("frank")
        for _ in range(2):
            await api.http.post("/v1/auth/login", json={"login": "frank", "password": "x"})
        await api.login("frank")
        for _ in range(2):
            bad = await api.http.post("/v1/auth/login", json={"login": "frank", "password": "x"})
            assert bad.status_code == 401
        await api.login("frank")


async def test_failures_are_throttled_per_address(open_client: Any) -> None:
    async with open_client(login_failures_per_address=4) as api:
        await api.signup("grace")
        for i in range(4):
            await api.http.post("/v1/auth/login", json={"login": f"name{i}", "password": "x"})
        blocked = await api.http.post(
            "/v1/auth/login", json={"login": "grace", "password": PASSWORD}
        )
        assert blocked.status_code == 429
    # Another address is not affected (same data, same Valkey).
    async with open_client(address="198.51.100.7", login_failures_per_address=4) as other:
        await other.login("grace")
