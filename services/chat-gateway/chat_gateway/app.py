"""The chat gateway app: ``create_app(settings)`` (uvicorn calls it with no argument)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx2
from fastapi import FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.staticfiles import StaticFiles

from chat_gateway.api import router as api_router
from chat_gateway.asyncapi import asyncapi_document
from chat_gateway.delivery import DeliveryReader, EventRouter, LocalSessions
from chat_gateway.endpoint import WebSocketEndpoint
from chat_gateway.fanout import Fanout
from chat_gateway.inbox import Inbox
from chat_gateway.metrics import GatewayMetrics
from chat_gateway.presence import Presence
from chat_gateway.protocol import SessionLimits
from chat_gateway.receipts import Receipts
from chat_gateway.runtime import GatewayRules, GatewayRuntime
from chat_gateway.settings import GatewaySettings
from chat_shared.ingest import Ingest
from chat_shared.limits import RateLimiter, send_rule
from chat_shared.redis import connect_redis, replication_of
from chat_shared.revocation import (
    REVOCATION_CHANNEL,
    SESSION_REVOCATION_CHANNEL,
    RedisRevocations,
)
from chat_shared.tasks import stop_if_cancelled
from chat_shared.tokens import KeySource
from chat_shared.web.app import create_service_app, token_verifier
from chat_shared.web.observability import CheckResult, ServiceMetrics

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


WEBSOCKET_PATH = "/v1/ws"


class GatewayApp(FastAPI):
    """Sends ``/v1/ws`` straight to the WebSocket endpoint. Through the middleware stack,
    every frame a socket writes would pass each middleware's ``send`` wrapper; sockets
    need none of them (no HTTP errors, no CORS, their own logging and metrics)."""

    websocket_endpoint = WebSocketEndpoint()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope["path"] == WEBSOCKET_PATH:
            await self.websocket_endpoint(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def default_gateway_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def create_app(
    settings: GatewaySettings | None = None, *, keys: KeySource | None = None
) -> FastAPI:
    settings = settings or GatewaySettings()
    gateway_id = settings.gateway_id or default_gateway_id()
    base_metrics = ServiceMetrics("gateway")
    metrics = GatewayMetrics(base_metrics)
    redis = connect_redis(settings, max_connections=256)

    async def redis_check() -> CheckResult:
        await redis.ping()
        return "ok"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        http = httpx2.AsyncClient(timeout=5.0)
        runtime = build_runtime(settings, gateway_id, redis, http, metrics, keys)
        await runtime.ingest.ensure_groups()
        await runtime.presence.clean_previous_incarnation()

        def record_batch(messages: int, appends: int) -> None:
            metrics.fanout_messages.inc(messages)
            metrics.fanout_inbox_appends.inc(appends)
            metrics.fanout_shards.set(len(fanout.stats.held))

        fanout = Fanout(
            redis,
            runtime.inbox,
            gateway_id=gateway_id,
            shards=settings.ingest_shards,
            lease_seconds=settings.fanout_lease_seconds,
            on_batch=record_batch,
        )
        tasks = [
            asyncio.create_task(fanout.run(), name="fanout"),
            asyncio.create_task(
                DeliveryReader(redis, gateway_id, runtime.sessions).run(), name="delivery"
            ),
            asyncio.create_task(runtime.presence.run(), name="presence"),
            asyncio.create_task(_tick_sessions(runtime), name="ticker"),
            asyncio.create_task(_listen_for_revocations(runtime), name="revocations"),
            asyncio.create_task(_recheck_revocations(runtime), name="revocation-recheck"),
        ]
        # Long-lived start-up objects need no more GC passes; large thresholds keep the
        # collector from stalling the loop when thousands of sockets churn objects.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        log.info("gateway started", extra={"gateway_id": gateway_id})
        try:
            yield {"gateway": runtime, "token_verifier": runtime.verifier}
        finally:
            runtime.accepting = False
            await fanout.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await http.aclose()
            await redis.aclose()
            log.info("gateway stopped", extra={"gateway_id": gateway_id})

    app = create_service_app(
        settings,
        title="Chat gateway",
        description=(
            "Real-time delivery over WebSocket at `/v1/ws` (protocol: `/asyncapi.json`), "
            "presence queries, and the web client at `/`."
        ),
        lifespan=lifespan,
        metrics=base_metrics,
        checks={"redis": redis_check},
        app_class=GatewayApp,
        serves_web_client=True,
    )
    app.include_router(api_router)

    document = asyncapi_document(settings)

    @app.get("/asyncapi.json", tags=["protocol"], summary="AsyncAPI 3 description of /v1/ws")
    async def asyncapi() -> dict[str, Any]:
        return document

    client_config = {
        "auth_url": settings.public_auth_url.rstrip("/"),
        "history_url": settings.public_history_url.rstrip("/"),
        "heartbeat_interval_ms": int(settings.heartbeat_interval * 1000),
        "max_message_chars": settings.max_message_chars,
    }

    @app.get("/config.json", tags=["web client"], summary="Where the web client finds the APIs")
    async def web_client_config() -> dict[str, Any]:
        return client_config

    if STATIC_DIR.is_dir():
        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="web")
    return app


def build_runtime(
    settings: GatewaySettings,
    gateway_id: str,
    redis: Any,
    http: httpx2.AsyncClient,
    metrics: GatewayMetrics,
    keys: KeySource | None,
) -> GatewayRuntime:
    sessions = LocalSessions()
    events = EventRouter(redis)
    limiter = RateLimiter(redis)
    rules = GatewayRules.of(settings)
    return GatewayRuntime(
        settings=settings,
        gateway_id=gateway_id,
        redis=redis,
        http=http,
        verifier=token_verifier(settings, redis=redis, http=http, keys=keys),
        ingest=Ingest(
            redis,
            shards=settings.ingest_shards,
            max_chars=settings.max_message_chars,
            replication=replication_of(settings),
            limiter=limiter,
            send_rule=send_rule(settings),
        ),
        inbox=Inbox(redis, maxlen=settings.inbox_maxlen),
        sessions=sessions,
        events=events,
        receipts=Receipts(
            redis,
            events,
            shards=settings.ingest_shards,
            limiter=limiter,
            read_rule=rules.read,
            tick_seconds=settings.receipt_tick_seconds,
        ),
        presence=Presence(
            redis,
            events,
            gateway_id=gateway_id,
            timeout=settings.presence_timeout,
            shards=settings.ingest_shards,
        ),
        metrics=metrics,
        limits=SessionLimits(
            typing_rate=settings.typing_rate,
            frame_rate=settings.frame_rate,
            frame_burst=settings.frame_burst,
            max_chars=settings.max_message_chars,
            heartbeat_interval=settings.heartbeat_interval,
            presence_timeout=settings.presence_timeout,
        ),
        limiter=limiter,
        rules=rules,
        allowed_origins=frozenset(settings.allowed_origins) | frozenset(settings.cors_origins),
    )


async def _tick_sessions(runtime: GatewayRuntime) -> None:
    """One timer for every socket: heartbeat deadlines and token expiry."""
    while True:
        stop_if_cancelled()
        await asyncio.sleep(0.5)
        now = time.time()
        for connection in runtime.sessions.all():
            connection.tick(now)


async def _recheck_revocations(runtime: GatewayRuntime) -> None:
    """Every ``revocation_recheck_seconds``, check every open socket's token against the
    revocation records, in one pipeline: a pub/sub message is fire-and-forget, and one
    missed while the listener reconnected must not leave a revoked session open until
    its token expires."""
    revocations = RedisRevocations(runtime.redis)
    while True:
        stop_if_cancelled()
        await asyncio.sleep(runtime.settings.revocation_recheck_seconds)
        connections = runtime.sessions.all()
        if not connections:
            continue
        tokens = [
            (c.user_id, c.principal.token_version, c.principal.session_id) for c in connections
        ]
        try:
            revoked = await revocations.revoked_among(tokens)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("revocation recheck failed", extra={"error": type(exc).__name__})
            continue
        for connection, gone in zip(connections, revoked, strict=True):
            if gone:
                connection.revoke()


async def _listen_for_revocations(runtime: GatewayRuntime) -> None:
    """Close (4401) the sockets whose tokens were revoked: every socket of a user after
    a password change, or those of one sign-in session after its logout."""
    while True:
        stop_if_cancelled()
        pubsub = runtime.redis.pubsub()
        try:
            await pubsub.subscribe(REVOCATION_CHANNEL, SESSION_REVOCATION_CHANNEL)
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                data = message["data"].decode()
                if message["channel"] == SESSION_REVOCATION_CHANNEL.encode():
                    for connection in runtime.sessions.all():
                        if connection.principal.session_id == data:
                            connection.revoke()
                    continue
                user_id, _, version = data.partition(":")
                for connection in runtime.sessions.of(user_id):
                    if connection.principal.token_version < int(version or 0):
                        connection.revoke()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("revocation listener restarting", extra={"error": type(exc).__name__})
            await asyncio.sleep(1.0)
        finally:
            with suppress(Exception):
                await pubsub.aclose()
