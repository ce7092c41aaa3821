"""Every HTTP answer carries the security headers; the web client's pages a policy
that allows only its own scripts and styles and no framing."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from chat_shared.web.headers import SecurityHeaders


def app(web_client: bool) -> SecurityHeaders:
    routes = [
        Route("/", lambda _: HTMLResponse("<p>client</p>")),
        Route("/v1/thing", lambda _: JSONResponse({"ok": True})),
        Route("/docs", lambda _: HTMLResponse("<p>docs</p>")),
    ]
    return SecurityHeaders(Starlette(routes=routes), web_client=web_client)


@pytest.mark.parametrize("path", ["/", "/v1/thing", "/docs", "/missing"])
def test_every_answer_is_unframeable_and_unsniffable(path: str) -> None:
    response = TestClient(app(web_client=True)).get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_the_web_client_gets_a_self_only_policy() -> None:
    policy = TestClient(app(web_client=True)).get("/").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_apis_allow_nothing_to_load() -> None:
    answer = TestClient(app(web_client=False)).get("/v1/thing")
    assert answer.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
