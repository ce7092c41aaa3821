"""Password storage: argon2id with the configured parameters, upgraded on login."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from argon2 import extract_parameters
from argon2.low_level import Type

from chat_auth.settings import AuthSettings
from chat_auth.storage import open_auth_store


async def stored_hash(settings: AuthSettings, username: str) -> str:
    store = await open_auth_store(settings)
    try:
        user = await store.find_by_username(username)
        assert user is not None
        return user.password_hash
    finally:
        await store.close()


async def test_passwords_are_stored_as_argon2id_with_the_settings(api: Any) -> None:
    await api.signup("alice", "correct horse battery")
    password_hash = await stored_hash(api.settings, "alice")
    assert password_hash.startswith("$argon2id$")
    assert "correct horse battery" not in password_hash
    params = extract_parameters(password_hash)
    assert params.type is Type.ID
    assert params.memory_cost == api.settings.argon2_memory_kib
    assert params.time_cost == api.settings.argon2_time_cost
    assert params.parallelism == api.settings.argon2_parallelism


async def test_login_rehashes_when_the_parameters_changed(open_client: Any) -> None:
    async with open_client() as api:
        await api.signup("bob")
        before = await stored_hash(api.settings, "bob")
    async with open_client(argon2_time_cost=3) as api:
        await api.login("bob")
        after = await stored_hash(api.settings, "bob")
        assert extract_parameters(before).time_cost == 2
        assert extract_parameters(after).time_cost == 3
        # The upgraded hash still opens the account, and sessions were not revoked.
        await api.login("bob")


def test_settings_refuse_parameters_below_the_floor() -> None:
    for field, value in (
        ("argon2_memory_kib", 8 * 1024),
        ("argon2_time_cost", 1),
        ("argon2_parallelism", 0),
    ):
        with pytest.raises(pydantic.ValidationError):
            AuthSettings(**{field: value})
