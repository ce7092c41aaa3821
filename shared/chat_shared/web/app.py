"""What every service's ``create_app`` shares: logging, errors, probes, metrics, CORS."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx2
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from redis.asyncio import Redis

from chat_shared.logs import configure_logging
from chat_shared.revocation import RedisRevocations
from chat_shared.settings import ChatSettings
from chat_shared.tokens import JwksKeySource, KeySource, TokenVerifier
from chat_shared.web.headers import SecurityHeaders
from chat_shared.web.observability import ReadinessCheck, ServiceMetrics, install_observability
from chat_shared.web.problems import install_problem_handlers, problem_responses

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Any]]]


def create_service_app(
    settings: ChatSettings,
    *,
    title: str,
    description: str,
    lifespan: Lifespan,
    metrics: ServiceMetrics,
    checks: dict[str, ReadinessCheck],
    version: str = "1.0.0",
    openapi_tags: list[dict[str, Any]] | None = None,
    app_class: type[FastAPI] = FastAPI,
    serves_web_client: bool = False,
) -> FastAPI:
    configure_logging(settings.service_name, settings.log_level)
    app = app_class(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        openapi_tags=openapi_tags,
        responses=problem_responses(422),
    )
    install_problem_handlers(app)
    install_observability(app, metrics, checks, settings.max_body_bytes)
    origins = [o for o in settings.cors_origins if o not in ("*", "null")]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    # Outermost, so that CORS preflights and error answers carry the headers too.
    app.add_middleware(SecurityHeaders, web_client=serves_web_client)
    return app


def token_verifier(
    settings: ChatSettings,
    *,
    redis: Redis,
    http: httpx2.AsyncClient | None = None,
    keys: KeySource | None = None,
) -> TokenVerifier:
    """The verifier from settings: our JWKS (or in-process keys) plus revocations."""
    if keys is None:
        if http is None:
            raise ValueError("a JWKS key source needs an HTTP client")
        keys = JwksKeySource(settings.jwks_url, http, max_age_seconds=settings.jwks_max_age_seconds)
    return TokenVerifier(
        keys,
        revocations=RedisRevocations(redis),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        min_refresh_seconds=settings.jwks_min_refresh_seconds,
    )
