"""The observability kit on a small app: probes, metrics labels, request ids, body cap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from fastapi import FastAPI

from chat_shared.errors import NotFound
from chat_shared.settings import ChatSettings
from chat_shared.web.app import create_service_app
from chat_shared.web.observability import CheckResult, ServiceMetrics


def small_app(degraded: bool = False, down: bool = False) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {}

    async def check() -> CheckResult:
        if down:
            raise ConnectionError("no")
        return "degraded" if degraded else "ok"

    app = create_service_app(
        ChatSettings(max_body_bytes=100),
        title="t",
        description="d",
        lifespan=lifespan,
        metrics=ServiceMetrics("test"),
        checks={"dep": check},
    )

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        if item_id == "missing":
            raise NotFound("No such item.")
        return {"id": item_id}

    @app.post("/echo")
    async def echo(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    return app


def client(app: FastAPI) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t")


async def test_probes_and_metrics_use_route_templates() -> None:
    async with client(small_app()) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "checks": {"dep": "ok"}}
        await http.get("/items/abc123")
        metrics = (await http.get("/metrics")).text
    assert 'route="/items/{item_id}"' in metrics
    assert "abc123" not in metrics


async def test_metrics_carry_the_process_and_gc_collectors() -> None:
    async with client(small_app()) as http:
        await http.get("/items/abc")
        metrics = (await http.get("/metrics")).text
    for family in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "python_gc_collections_total",
        "python_info",
        "chat_http_request_duration_seconds_bucket",
    ):
        assert f"\n{family}" in metrics, family


async def test_readiness_reports_degraded_and_down() -> None:
    async with client(small_app(degraded=True)) as http:
        degraded = await http.get("/readyz")
    assert degraded.status_code == 200
    assert degraded.json()["status"] == "degraded"
    async with client(small_app(down=True)) as http:
        down = await http.get("/readyz")
    assert down.status_code == 503
    assert down.json()["checks"]["dep"].startswith("down")


async def test_errors_are_problem_json_with_a_request_id() -> None:
    async with client(small_app()) as http:
        missing = await http.get("/items/missing", headers={"X-Request-ID": "req-42"})
        invalid = await http.post("/echo", content=b"[not json")
        too_big = await http.post("/echo", json={"x": "y" * 200})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["x-request-id"] == "req-42"
    assert missing.json()["detail"] == "No such item."
    assert invalid.status_code == 422
    assert {"type", "title", "status", "detail"} <= invalid.json().keys()
    assert too_big.status_code == 413
    assert too_big.json()["status"] == 413
