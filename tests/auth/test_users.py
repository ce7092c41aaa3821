"""/v1/users: own profile, changes, deletion, public profiles, search and lookup."""

from __future__ import annotations

from typing import Any

import pytest

PASSWORD = "correct horse battery"
PUBLIC_FIELDS = {"id", "username", "display_name", "created_at", "last_active_at"}


async def test_me_needs_a_token(api: Any) -> None:
    response = await api.http.get("/v1/users/me")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    bad = await api.http.get("/v1/users/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert bad.status_code == 401


async def test_me_shows_the_own_profile_with_email(api: Any) -> None:
    profile, pair = await api.user("alice")
    response = await api.http.get("/v1/users/me", headers=api.bearer(pair))
    assert response.status_code == 200
    assert response.json() == profile


async def test_patch_changes_display_name_and_email(api: Any) -> None:
    _, pair = await api.user("bob")
    response = await api.http.patch(
        "/v1/users/me",
        headers=api.bearer(pair),
        json={"display_name": "Bobby", "email": "Bob@New.example"},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["display_name"], body["email"]) == ("Bobby", "Bob@New.example")
    await api.login("bob@new.example")
    # The old email is free again.
    await api.signup("bob2", email="bob@example.com")


async def test_patch_to_a_taken_email_is_a_conflict(api: Any) -> None:
    await api.signup("carol", email="carol@example.com")
    _, pair = await api.user("dave")
    response = await api.http.patch(
        "/v1/users/me", headers=api.bearer(pair), json={"email": "CAROL@example.com"}
    )
    assert response.status_code == 409


async def test_password_change_needs_the_current_password(api: Any) -> None:
    _, pair = await api.user("erin")
    missing = await api.http.patch(
        "/v1/users/me", headers=api.bearer(pair), json={"password": "a brand new secret"}
    )
    assert missing.status_code == 422
    wrong = await api.http.patch(
        "/v1/users/me",
        headers=api.bearer(pair),
        json={"password": "a brand new secret", "current_password": "not it at all"},
    )
    assert wrong.status_code == 403
    await api.login("erin")  # nothing changed


async def test_password_change_revokes_every_session(api: Any) -> None:
    _, pair = await api.user("frank")
    other_device = await api.login("frank")
    response = await api.http.patch(
        "/v1/users/me",
        headers=api.bearer(pair),
        json={"password": "a brand new secret", "current_password": PASSWORD},
    )
    assert response.status_code == 200
    for old in (pair, other_device):
        assert (await api.http.get("/v1/users/me", headers=api.bearer(old))).status_code == 401
        refreshed = await api.http.post(
            "/v1/auth/refresh", json={"refresh_token": old["refresh_token"]}
        )
        assert refreshed.status_code == 401
    old_password = await api.http.post(
        "/v1/auth/login", json={"login": "frank", "password": PASSWORD}
    )
    assert old_password.status_code == 401
    fresh = await api.login("frank", "a brand new secret")
    assert (await api.http.get("/v1/users/me", headers=api.bearer(fresh))).status_code == 200


async def test_wrong_current_passwords_are_throttled(open_client: Any) -> None:
    async with open_client(login_failures_per_account=2) as api:
        _, pair = await api.user("gina")
        attempt = {"password": "a brand new secret", "current_password": "guess guess"}
        for _ in range(2):
            response = await api.http.patch("/v1/users/me", headers=api.bearer(pair), json=attempt)
            assert response.status_code == 403
        response = await api.http.patch("/v1/users/me", headers=api.bearer(pair), json=attempt)
        assert response.status_code == 429


async def test_delete_revokes_tokens_and_frees_the_username(api: Any) -> None:
    _, pair = await api.user("henry")
    response = await api.http.delete("/v1/users/me", headers=api.bearer(pair))
    assert response.status_code == 204
    assert (await api.http.get("/v1/users/me", headers=api.bearer(pair))).status_code == 401
    refreshed = await api.http.post(
        "/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 401
    gone = await api.http.post("/v1/auth/login", json={"login": "henry", "password": PASSWORD})
    assert gone.status_code == 401
    reborn = await api.signup("henry")
    assert reborn["username"] == "henry"


async def test_public_profile_has_no_email(api: Any) -> None:
    alice, _ = await api.user("alice")
    _, bob = await api.user("bob")
    response = await api.http.get(f"/v1/users/{alice['id']}", headers=api.bearer(bob))
    assert response.status_code == 200
    assert response.json() == {k: alice[k] for k in PUBLIC_FIELDS}


@pytest.mark.parametrize("user_id", ["01M85EYCPR3ZB4066H0VXKNWVC", "not-an-id", "x" * 300])
async def test_unknown_profiles_are_404(api: Any, user_id: str) -> None:
    _, pair = await api.user("carol")
    response = await api.http.get(f"/v1/users/{user_id}", headers=api.bearer(pair))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_search_by_username_prefix(api: Any) -> None:
    for name in ("alicia", "alice", "alfred", "bob"):
        await api.signup(name)
    pair = await api.login("bob")
    response = await api.http.get("/v1/users", params={"q": "ALI"}, headers=api.bearer(pair))
    assert response.status_code == 200
    users = response.json()["users"]
    assert [u["username"] for u in users] == ["alice", "alicia"]
    assert all(set(u) == PUBLIC_FIELDS for u in users)
    two = await api.http.get("/v1/users", params={"q": "al", "limit": 2}, headers=api.bearer(pair))
    assert two.json()["users"] == [], "a prefix under 3 characters lists nobody"
    one = await api.http.get("/v1/users", params={"q": "ali", "limit": 1}, headers=api.bearer(pair))
    assert [u["username"] for u in one.json()["users"]] == ["alice"]
    none = await api.http.get("/v1/users", params={"q": "z%"}, headers=api.bearer(pair))
    assert none.json() == {"users": [], "next_cursor": None}


async def test_search_pages_carry_a_cursor(api: Any) -> None:
    for name in ("kai", "kaia", "kaiden", "kaio"):
        await api.signup(name)
    pair = await api.login("kai")
    first = (
        await api.http.get("/v1/users", params={"q": "kai", "limit": 3}, headers=api.bearer(pair))
    ).json()
    assert [u["username"] for u in first["users"]] == ["kai", "kaia", "kaiden"]
    assert first["next_cursor"] == "kaiden"
    rest = (
        await api.http.get(
            "/v1/users",
            params={"q": "kai", "limit": 3, "after": first["next_cursor"]},
            headers=api.bearer(pair),
        )
    ).json()
    assert rest == {"users": rest["users"], "next_cursor": None}
    assert [u["username"] for u in rest["users"]] == ["kaio"]


async def test_prefix_crawling_is_rate_limited(open_client: Any) -> None:
    async with open_client(user_searches_per_minute=6) as api:  # a burst of 3
        for name in ("joe", "joel", "jon"):
            await api.signup(name)
        pair = await api.login("joe")
        exact = await api.http.get("/v1/users", params={"q": "JOE"}, headers=api.bearer(pair))
        assert [u["username"] for u in exact.json()["users"]] == ["joe", "joel"]
        for prefix in ("jon", "joel"):
            assert (
                await api.http.get("/v1/users", params={"q": prefix}, headers=api.bearer(pair))
            ).status_code == 200
        crawl = await api.http.get("/v1/users", params={"q": "jox"}, headers=api.bearer(pair))
        assert crawl.status_code == 429
        assert int(crawl.headers["retry-after"]) >= 1
