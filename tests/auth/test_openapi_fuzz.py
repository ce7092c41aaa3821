"""schemathesis over the auth service's OpenAPI: no 5xx, and every answer matches the
documented status codes, media types, headers and schemas.

The app runs in-process (schemathesis drives its ASGI lifespan) on real Valkey and
SQLite. One test per documented operation, each with a bounded number of generated
cases, valid and invalid. (schemathesis' own pytest fixture loader does not run
under pytest 9, so the operations are parametrized here and hypothesis drives
schemathesis' case strategies directly.)

Protected routes get a real access token; when a generated call spends it (a
password change or an account deletion revokes it), the next call gets a new user.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import ASGIClient, get_client
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chat_auth.app import create_app
from chat_auth.settings import AuthSettings

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class TokenKeeper:
    """A live access token for the fuzzed calls, renewed when one revokes it."""

    def __init__(self, client: ASGIClient) -> None:
        self.client = client
        self.names = (f"fuzz{i}" for i in itertools.count())
        self.token: str | None = None

    def headers(self) -> dict[str, str]:
        if self.token is None or self._revoked(self.token):
            self.token = self._new_user()
        return {"Authorization": f"Bearer {self.token}"}

    def _revoked(self, token: str) -> bool:
        me = self.client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        return me.status_code == 401

    def _new_user(self) -> str:
        name = next(self.names)
        password = "fuzzing password"
        signup = self.client.post(
            "/v1/auth/signup",
            json={"username": name, "email": f"{name}@example.com", "password": password},
        )
        assert signup.status_code == 201, signup.text
        login = self.client.post("/v1/auth/login", json={"login": name, "password": password})
        assert login.status_code == 200, login.text
        token: str = login.json()["access_token"]
        return token


def documented_operations() -> list[tuple[str, str]]:
    # Building the app connects nothing (that happens in its lifespan), so the
    # operations can be listed at collection time.
    app = create_app(AuthSettings(redis_url="redis://collect.invalid"))
    return [
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if path.startswith(("/v1/", "/.well-known/"))
    ]


@pytest.fixture
def fuzzed_app(make_settings: Callable[..., AuthSettings]) -> FastAPI:
    # Throttles high enough that the fuzzer reaches the code behind them.
    return create_app(
        make_settings(
            login_failures_per_account=100_000,
            login_failures_per_address=100_000,
            signups_per_address=100_000,
        )
    )


@pytest.mark.parametrize(("method", "path"), documented_operations())
def test_operation_honours_the_openapi(fuzzed_app: FastAPI, method: str, path: str) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    operation = schema[path][method]
    tokens = TokenKeeper(get_client(fuzzed_app))
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def call(case: Any) -> None:
        case.call_and_validate(headers=tokens.headers(), checks=CHECKS)

    call()
