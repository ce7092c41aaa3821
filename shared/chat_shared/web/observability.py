"""Probes, Prometheus metrics, request ids, access logs and the body-size cap.

``install_observability`` mounts all of it on an app. Readiness is a list of named
checks supplied by the service; each returns ``"ok"``, ``"degraded"`` (still serving,
reported) or raises (not ready: 503).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat_shared.logs import request_id_var
from chat_shared.web.problems import problem_response

log = logging.getLogger("chat.access")

CheckResult = Literal["ok", "degraded"]
ReadinessCheck = Callable[[], Awaitable[CheckResult]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass
class ServiceMetrics:
    """One registry per app, so several apps can live in one process (tests)."""

    service: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        # What an operator looks at first: memory, CPU, open files, GC pauses. The
        # process collector reads /proc of this process (one per pod in production).
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.http_requests = Counter(
            "chat_http_requests_total",
            "HTTP requests served.",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "chat_http_request_duration_seconds",
            "HTTP request latency.",
            ["service", "method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)


class ObservabilityMiddleware:
    """Pure ASGI: request id, body cap, one JSON access line and metrics per request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        try:
            declared = headers.get(b"content-length")
            if declared is not None and (
                not declared.isdigit() or int(declared) > self.max_body_bytes
            ):
                status = 413 if declared.isdigit() else 400
                await problem_response(
                    status,
                    f"Request bodies are limited to {self.max_body_bytes} bytes."
                    if status == 413
                    else "Invalid Content-Length.",
                    headers={"X-Request-ID": request_id},
                )(scope, receive, send)
                return

            received = 0
            too_large = False

            async def capped_receive() -> Message:
                nonlocal received, too_large
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body_bytes:
                        too_large = True
                        raise _BodyTooLarge
                return message

            response_started = False

            async def send_with_id(message: Message) -> None:
                nonlocal status, response_started
                if message["type"] == "http.response.start":
                    status = message["status"]
                    response_started = True
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"x-request-id", request_id.encode()),
                    ]
                await send(message)

            try:
                await self.app(scope, capped_receive, send_with_id)
            except _BodyTooLarge:
                if response_started:
                    raise
                status = 413
                await problem_response(
                    413,
                    f"Request bodies are limited to {self.max_body_bytes} bytes.",
                    headers={"X-Request-ID": request_id},
                )(scope, receive, send)
            if too_large and not response_started:
                status = 413
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope.get("method", "")
            self.metrics.http_requests.labels(
                self.metrics.service, method, route, str(status)
            ).inc()
            self.metrics.http_latency.labels(self.metrics.service, method, route).observe(elapsed)
            if route not in ("/healthz", "/readyz", "/metrics"):
                log.info(
                    "request",
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                    },
                )
            request_id_var.reset(token)


class _BodyTooLarge(Exception):
    pass


def _route_template(scope: Scope) -> str:
    """The matched route's template (set by the router during the call), so metric
    labels carry ``/v1/users/{user_id}``, never an id: cardinality stays bounded."""
    path = getattr(scope.get("route"), "path", None)
    return str(path) if path else "unmatched"


def observability_router(
    metrics: ServiceMetrics, checks: dict[str, ReadinessCheck], timeout: float = 2.0
) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: every dependency answers",
        responses={503: {"description": "A dependency does not answer"}},
    )
    async def readyz() -> Response:
        results: dict[str, Any] = {}
        ready = True
        degraded = False
        for name, check in checks.items():
            try:
                outcome = await asyncio.wait_for(check(), timeout)
                results[name] = outcome
                degraded = degraded or outcome == "degraded"
            except Exception as exc:  # a failing dependency is an answer, not a crash
                results[name] = f"down: {type(exc).__name__}"
                ready = False
        status = "ok" if ready and not degraded else ("degraded" if ready else "down")
        return JSONResponse(
            {"status": status, "checks": results}, status_code=200 if ready else 503
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def install_observability(
    app: FastAPI,
    metrics: ServiceMetrics,
    checks: dict[str, ReadinessCheck],
    max_body_bytes: int,
) -> None:
    app.include_router(observability_router(metrics, checks))
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, max_body_bytes=max_body_bytes)
