"""The history service: conversations, membership and durable message history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from fastapi import FastAPI

from chat_history import api
from chat_history.consumer import start_consumers
from chat_history.metrics import HistoryMetrics
from chat_history.runtime import HistoryRuntime
from chat_history.settings import HistorySettings
from chat_shared.tokens import KeySource
from chat_shared.web.app import create_service_app, token_verifier
from chat_shared.web.observability import CheckResult, ServiceMetrics

DESCRIPTION = """\
Conversations (direct and group), their members, and every message in order.

Messages are ordered by the ingest (the same path the WebSocket gateway uses) and
persisted by the `history` consumer group; reads merge what the store holds with what
it does not hold yet, so history never has a gap. Errors are `application/problem+json`.
"""


class _Running:
    """The runtime while the app is up (readiness checks need it)."""

    runtime: HistoryRuntime | None = None

    def get(self) -> HistoryRuntime:
        if self.runtime is None:
            raise RuntimeError("history is not started")
        return self.runtime


def create_app(
    settings: HistorySettings | None = None,
    *,
    keys: KeySource | None = None,
    http_transport: httpx2.AsyncBaseTransport | None = None,
) -> FastAPI:
    """``keys`` replaces the JWKS fetch (tests mint their own tokens);
    ``http_transport`` carries the outgoing calls to the auth service (tests route them
    to an in-process app)."""
    settings = settings or HistorySettings()
    metrics = HistoryMetrics(ServiceMetrics(settings.service_name))
    running = _Running()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        runtime = await HistoryRuntime.open(settings, metrics, http_transport=http_transport)
        try:
            verifier = token_verifier(settings, redis=runtime.redis, http=runtime.http, keys=keys)
            if settings.consumer_enabled:
                start_consumers(runtime)
            runtime.start("maintenance", runtime.maintain())
            running.runtime = runtime
            yield {
                "token_verifier": verifier,
                "runtime": runtime,
                "conversations": runtime.conversations,
                "messages": runtime.messages,
                "read_markers": runtime.read_markers,
                "limits": api.WriteLimits(runtime.limiter, runtime.rules),
            }
        finally:
            running.runtime = None
            await runtime.close()

    async def redis_check() -> CheckResult:
        return await running.get().check_redis()

    async def store_check() -> CheckResult:
        return await running.get().check_store()

    async def lag_check() -> CheckResult:
        return await running.get().check_lag()

    app = create_service_app(
        settings,
        title="Chat history service",
        description=DESCRIPTION,
        lifespan=lifespan,
        metrics=metrics.base,
        checks={"redis": redis_check, "store": store_check, "history_lag": lag_check},
        openapi_tags=[
            {"name": "conversations", "description": "Conversations, members, messages."},
            {"name": "operations", "description": "Probes and metrics."},
        ],
    )
    app.include_router(api.router)
    return app
