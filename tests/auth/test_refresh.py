"""POST /v1/auth/refresh and /v1/auth/logout: rotation, reuse detection, revocation,
the grace for a benign double refresh, and the end of a sign-in."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest

from chat_auth.refresh import InvalidRefreshToken, RefreshTokens, utc_now
from chat_auth.storage import open_auth_store
from tests.auth.conftest import AuthClient

OpenClient = Callable[..., contextlib.AbstractAsyncContextManager[AuthClient]]


@pytest.fixture
async def strict(open_client: OpenClient) -> AsyncIterator[AuthClient]:
    """No grace: every second use of a refresh token is a reuse."""
    async with open_client(refresh_reuse_grace_seconds=0) as client:
        yield client


async def refresh(api: Any, token: str) -> Any:
    return await api.http.post("/v1/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_the_pair(api: Any) -> None:
    _, first = await api.user("alice")
    response = await refresh(api, first["refresh_token"])
    assert response.status_code == 200
    second = response.json()
    assert set(second) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert second["refresh_token"] != first["refresh_token"]
    assert (await api.http.get("/v1/users/me", headers=api.bearer(second))).status_code == 200
    # The next rotation works from the new token.
    assert (await refresh(api, second["refresh_token"])).status_code == 200


async def test_a_used_refresh_token_stops_working(strict: Any) -> None:
    api = strict
    _, first = await api.user("bob")
    assert (await refresh(api, first["refresh_token"])).status_code == 200
    again = await refresh(api, first["refresh_token"])
    assert again.status_code == 401
    assert again.headers["content-type"] == "application/problem+json"


async def test_reusing_a_rotated_token_revokes_the_whole_family(strict: Any) -> None:
    api = strict
    _, stolen = await api.user("carol")
    rotated = (await refresh(api, stolen["refresh_token"])).json()
    # The thief replays the old token: refused, and the family is burnt ...
    assert (await refresh(api, stolen["refresh_token"])).status_code == 401
    # ... so the legitimate holder's newer token is refused too.
    assert (await refresh(api, rotated["refresh_token"])).status_code == 401


async def test_other_families_survive_a_reuse(strict: Any) -> None:
    api = strict
    _, laptop = await api.user("dave")
    phone = await api.login("dave")
    await refresh(api, laptop["refresh_token"])
    await refresh(api, laptop["refresh_token"])  # reuse: laptop family revoked
    assert (await refresh(api, phone["refresh_token"])).status_code == 200


async def test_refresh_tokens_are_stored_only_as_hashes(api: Any) -> None:
    _, pair = await api.user("erin")
    token = pair["refresh_token"]
    store = await open_auth_store(api.settings)
    try:
        family_id = token.split(".")[0]
        digest = hashlib.sha256(token.encode()).hexdigest()
        record = await store.get_refresh_token(family_id, digest)
        assert record is not None
        assert record.token_hash == digest
    finally:
        await store.close()
    raw = (api.settings.data_dir / "auth.db").read_bytes()
    assert token.split(".")[1].encode() not in raw


async def test_garbage_and_unknown_refresh_tokens_are_401(api: Any) -> None:
    _, pair = await api.user("frank")
    family = pair["refresh_token"].split(".")[0]
    for token in ("garbage", "a.b", f"{family}.{'A' * 43}", pair["access_token"]):
        response = await refresh(api, token)
        assert response.status_code == 401, token


async def test_logout_revokes_the_family(api: Any) -> None:
    _, pair = await api.user("grace")
    rotated = (await refresh(api, pair["refresh_token"])).json()
    response = await api.http.post(
        "/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]}
    )
    assert response.status_code == 204
    assert response.content == b""
    assert (await refresh(api, rotated["refresh_token"])).status_code == 401


async def test_logout_of_an_unknown_token_is_still_204(api: Any) -> None:
    for token in ("garbage", "01M85EYCPR3ZB4066H0VXKNWVC." + "x" * 43):
        response = await api.http.post("/v1/auth/logout", json={"refresh_token": token})
        assert response.status_code == 204


async def test_a_second_use_within_the_grace_gets_the_same_pair(api: Any) -> None:
    _, first = await api.user("hana")
    one = await refresh(api, first["refresh_token"])
    two = await refresh(api, first["refresh_token"])  # a retry after a lost answer
    assert (one.status_code, two.status_code) == (200, 200)
    assert one.json() == two.json()
    assert (await refresh(api, one.json()["refresh_token"])).status_code == 200


async def test_concurrent_refreshes_share_one_pair_and_keep_the_session(api: Any) -> None:
    _, first = await api.user("ivan")
    answers = await asyncio.gather(*(refresh(api, first["refresh_token"]) for _ in range(5)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["refresh_token"] for a in answers}) == 1
    pair = answers[0].json()
    assert (await api.http.get("/v1/users/me", headers=api.bearer(pair))).status_code == 200
    assert (await refresh(api, pair["refresh_token"])).status_code == 200


async def test_a_reuse_after_the_grace_revokes_the_family(open_client: OpenClient) -> None:
    async with open_client(refresh_reuse_grace_seconds=0.2) as api:
        _, stolen = await api.user("jana")
        rotated = (await refresh(api, stolen["refresh_token"])).json()
        await asyncio.sleep(0.3)  # the window is wall-clock time: let it pass
        assert (await refresh(api, stolen["refresh_token"])).status_code == 401
        assert (await refresh(api, rotated["refresh_token"])).status_code == 401
        refused = await api.http.get("/v1/users/me", headers=api.bearer(rotated))
        assert refused.status_code == 401, "the session's access token outlived the theft"


async def test_a_sign_in_ends_after_its_lifetime_however_often_refreshed(api: Any) -> None:
    _, pair = await api.user("kim")
    store = await open_auth_store(api.settings)
    later = utc_now() + timedelta(seconds=301)
    try:
        aged = RefreshTokens(
            store, ttl_seconds=3600, family_lifetime_seconds=300, clock=lambda: later
        )
        with pytest.raises(InvalidRefreshToken):
            await aged.consume(pair["refresh_token"])
        young = RefreshTokens(store, ttl_seconds=3600, family_lifetime_seconds=300)
        assert (await young.consume(pair["refresh_token"])).user_id
    finally:
        await store.close()
