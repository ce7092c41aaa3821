"""Schemathesis over the history API (real uvicorn server, bounded examples): no 5xx,
every answer matches the published OpenAPI schema."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chat_history.app import create_app
from chat_history.settings import HistorySettings
from tests.history.conftest import StartHistory, Users
from tests.support.tokens import TokenMinter

# Not negative_data_rejection: it counts an unknown query parameter as invalid input
# that must be refused, while ignoring unknown query parameters is ordinary HTTP.
# Refusal of invalid bodies and parameters is asserted by the API tests (422s).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]


@pytest.fixture
def fuzz_target(start_history: StartHistory, minter: TokenMinter, users: Users) -> dict[str, Any]:
    running = start_history()
    headers = {"Authorization": f"Bearer {minter.token(users.alice)}"}
    with httpx2.Client(base_url=running.url, headers=headers) as client:
        group = client.post(
            "/v1/conversations",
            json={
                "kind": "group",
                "name": "fuzz",
                "members": [users.bob],
            },
        ).json()
        client.post(
            f"/v1/conversations/{group['id']}/messages", json={"body": "seed", "client_id": "seed"}
        )
    return {"url": running.url, "headers": headers, "conversation_id": group["id"]}


def published_schema() -> dict[str, Any]:
    # The document the service serves at /openapi.json; building the app connects to
    # nothing (that happens in its lifespan), so this runs at collection time.
    app = create_app(HistorySettings(_env_file=None, redis_url="redis://unused"))  # type: ignore[call-arg]
    document: dict[str, Any] = app.openapi()
    return document


schema = schemathesis.openapi.from_dict(published_schema())


@schema.include(path_regex="^/v1/conversations").parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_history_api_honours_its_schema(
    case: schemathesis.Case, fuzz_target: dict[str, Any]
) -> None:
    # Half the cases aim at a conversation the caller belongs to, so the fuzzer gets
    # past the membership check as well as hitting it.
    if (
        case.path_parameters
        and "conversation_id" in case.path_parameters
        and (hash(str(case.path_parameters)) % 2 == 0)
    ):
        case.path_parameters["conversation_id"] = fuzz_target["conversation_id"]
    case.call_and_validate(
        base_url=fuzz_target["url"], headers=fuzz_target["headers"], checks=CHECKS
    )
