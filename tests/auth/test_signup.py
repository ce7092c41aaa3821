"""POST /v1/auth/signup: accounts, uniqueness, validation."""

from __future__ import annotations

from typing import Any

import pytest

from chat_shared.ids import is_id

PROBLEM = "application/problem+json"


async def test_signup_returns_the_new_account(api: Any) -> None:
    response = await api.http.post(
        "/v1/auth/signup",
        json={
            "username": "Alice",
            "email": "Alice@Example.com",
            "password": "correct horse battery",
            "display_name": "Alice A.",
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "username", "email", "display_name", "created_at", "last_active_at"}
    assert is_id(body["id"])
    assert body["username"] == "alice"  # folded: usernames are case-insensitive
    assert body["email"] == "Alice@Example.com"
    assert body["display_name"] == "Alice A."
    assert body["created_at"].endswith("Z")
    assert body["last_active_at"] is None  # never offline yet


async def test_display_name_defaults_to_the_username(api: Any) -> None:
    assert (await api.signup("bob"))["display_name"] == "bob"


async def test_taken_username_is_a_conflict_whatever_the_case(api: Any) -> None:
    await api.signup("carol")
    response = await api.http.post(
        "/v1/auth/signup",
        json={
            "username": "CAROL",
            "email": "other@example.com",
            "password": "correct horse battery",
        },
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert "username" in response.json()["detail"].lower()


async def test_taken_email_is_a_conflict_whatever_the_case(api: Any) -> None:
    await api.signup("dave", email="dave@example.com")
    response = await api.http.post(
        "/v1/auth/signup",
        json={
            "username": "dave2",
            "email": "DAVE@example.COM",
            "password": "correct horse battery",
        },
    )
    assert response.status_code == 409
    assert "email" in response.json()["detail"].lower()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "ab"),
        ("username", "x" * 33),
        ("username", "has space"),
        ("username", "émile"),
        ("email", "not-an-email"),
        ("email", "a@b"),
        ("password", "short7!"),
        ("password", "p" * 129),
        ("display_name", "   "),
        ("display_name", "evil\u202ename"),
    ],
)
async def test_invalid_fields_are_refused_with_422(api: Any, field: str, value: str) -> None:
    body = {
        "username": "erin",
        "email": "erin@example.com",
        "password": "correct horse battery",
        field: value,
    }
    response = await api.http.post("/v1/auth/signup", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert {"type", "title", "status", "detail"} <= set(problem)
    assert any(field in error["loc"] for error in problem["errors"])
    if field == "password":
        assert value not in response.text  # a password is never echoed back


async def test_unknown_fields_are_refused(api: Any) -> None:
    response = await api.http.post(
        "/v1/auth/signup",
        json={
            "username": "frank",
            "email": "frank@example.com",
            "password": "correct horse battery",
            "is_admin": True,
        },
    )
    assert response.status_code == 422


async def test_malformed_json_is_a_422_not_a_500(api: Any) -> None:
    response = await api.http.post(
        "/v1/auth/signup", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


async def test_long_passwords_are_kept_whole(api: Any) -> None:
    password = "pässwörd-" * 14  # 126 characters, more than 128 bytes
    await api.signup("grace", password)
    await api.login("grace", password)
    wrong = await api.http.post(
        "/v1/auth/login", json={"login": "grace", "password": password[:-1]}
    )
    assert wrong.status_code == 401


async def test_signups_are_throttled_per_address(open_client: Any) -> None:
    async with open_client(signups_per_address=2) as api:
        await api.signup("henry1")
        await api.signup("henry2")
        response = await api.http.post(
            "/v1/auth/signup",
            json={
                "username": "henry3",
                "email": "henry3@example.com",
                "password": "correct horse battery",
            },
        )
        assert response.status_code == 429
        assert 1 <= int(response.headers["retry-after"]) <= api.settings.signup_window_seconds
        assert response.headers["content-type"] == PROBLEM
