"""POST /v1/auth/refresh and /v1/auth/logout: rotation, reuse detection, revocation."""

from __future__ import annotations

import hashlib
from typing import Any

from chat_auth.storage import open_auth_store


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


async def test_a_used_refresh_token_stops_working(api: Any) -> None:
    _, first = await api.user("bob")
    assert (await refresh(api, first["refresh_token"])).status_code == 200
    again = await refresh(api, first["refresh_token"])
    assert again.status_code == 401
    assert again.headers["content-type"] == "application/problem+json"


async def test_reusing_a_rotated_token_revokes_the_whole_family(api: Any) -> None:
    _, stolen = await api.user("carol")
    rotated = (await refresh(api, stolen["refresh_token"])).json()
    # The thief replays the old token: refused, and the family is burnt ...
    assert (await refresh(api, stolen["refresh_token"])).status_code == 401
    # ... so the legitimate holder's newer token is refused too.
    assert (await refresh(api, rotated["refresh_token"])).status_code == 401


async def test_other_families_survive_a_reuse(api: Any) -> None:
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
