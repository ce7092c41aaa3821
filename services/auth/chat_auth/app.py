"""The auth service's app factory (``python -m chat_shared.serve auth``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis

from chat_auth.access import AccessTokens
from chat_auth.accounts import Accounts
from chat_auth.api import build_router
from chat_auth.directory import Directory
from chat_auth.keyring import Keyring
from chat_auth.last_active import LastActiveConsumer
from chat_auth.passwords import Passwords
from chat_auth.refresh import RefreshTokens, utc_now
from chat_auth.refresh_grace import RefreshGrace
from chat_auth.sessions import Sessions
from chat_auth.settings import AuthSettings
from chat_auth.storage import open_auth_store
from chat_auth.throttle import Throttle
from chat_shared.limits import RateLimiter, per_minute
from chat_shared.membership import MembershipCache
from chat_shared.ports.auth import AuthStore
from chat_shared.redis import connect_redis
from chat_shared.revocation import RedisRevocations
from chat_shared.tasks import stop_if_cancelled
from chat_shared.tokens import StaticKeySource
from chat_shared.web.app import create_service_app, token_verifier
from chat_shared.web.observability import CheckResult, ServiceMetrics

log = logging.getLogger(__name__)

DESCRIPTION = """\
Accounts, password sign-in, short-lived access tokens (ES256 JWTs verified by every
service through the JWKS) and rotating refresh tokens.

Errors are `application/problem+json`. Use **Authorize** to sign in from this page.
"""

TAGS = [
    {"name": "auth", "description": "Sign-up, sign-in, token refresh and sign-out."},
    {"name": "users", "description": "Profiles: your own, and other people's public ones."},
    {"name": "keys", "description": "Public signing keys (JWKS)."},
]


class _Dependencies:
    """What the lifespan opens; the readiness checks read it (one per app)."""

    redis: Redis | None = None
    store: AuthStore | None = None


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    settings = settings or AuthSettings()
    deps = _Dependencies()
    metrics = ServiceMetrics(settings.service_name)
    logins = metrics.counter("chat_auth_logins_total", "Sign-in attempts by outcome.", ("outcome",))
    last_active_entries = metrics.counter(
        "chat_auth_last_active_entries_total",
        "Presence stream entries by outcome (recorded, skipped as malformed).",
        ("outcome",),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        keyring = await asyncio.to_thread(
            Keyring.load, settings.keys_dir, generate=settings.signing_keys_generate
        )
        redis = connect_redis(settings)
        store = await open_auth_store(settings)
        deps.redis, deps.store = redis, store
        purger: asyncio.Task[None] | None = None
        last_active = LastActiveConsumer(
            redis,
            store,
            batch_size=settings.last_active_batch_size,
            claim_idle_seconds=settings.last_active_claim_idle_seconds,
            entries_total=last_active_entries,
        )
        last_active_task: asyncio.Task[None] | None = None
        try:
            passwords = Passwords.from_settings(settings)
            await passwords.prepare()
            throttle = Throttle(redis, settings)
            refresh_tokens = RefreshTokens(
                store,
                ttl_seconds=settings.refresh_token_ttl_seconds,
                family_lifetime_seconds=settings.refresh_family_max_seconds,
            )
            # Revocation records must outlive every access token they revoke.
            revocations = RedisRevocations(
                redis, ttl_seconds=max(3600, settings.access_token_ttl_seconds + 300)
            )
            access_tokens = AccessTokens(
                keyring,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                ttl_seconds=settings.access_token_ttl_seconds,
            )
            purger = asyncio.create_task(
                _purge_refresh_tokens(store, settings.refresh_purge_interval_seconds)
            )
            last_active_task = asyncio.create_task(last_active.run())
            accounts = Accounts(
                users=store,
                passwords=passwords,
                throttle=throttle,
                refresh_tokens=refresh_tokens,
                revocations=revocations,
            )
            yield {
                # The auth service verifies its own tokens with its own public keys.
                "token_verifier": token_verifier(
                    settings, redis=redis, keys=StaticKeySource(keyring.public_keys())
                ),
                "keyring": keyring,
                "sessions": Sessions(
                    users=store,
                    passwords=passwords,
                    throttle=throttle,
                    refresh_tokens=refresh_tokens,
                    access_tokens=access_tokens,
                    revocations=revocations,
                    grace=RefreshGrace(redis, seconds=settings.refresh_reuse_grace_seconds),
                ),
                "accounts": accounts,
                "directory": Directory(
                    accounts,
                    MembershipCache(redis, settings.ingest_shards),
                    limiter=RateLimiter(redis),
                    search_rule=per_minute("user_search", settings.user_searches_per_minute),
                ),
            }
        finally:
            for task in (purger, last_active_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if last_active_task is not None:
                await last_active.retire()
            deps.redis = deps.store = None
            await store.close()
            await redis.aclose()

    async def redis_check() -> CheckResult:
        if deps.redis is None:
            raise RuntimeError("not started")
        await deps.redis.ping()
        return "ok"

    async def store_check() -> CheckResult:
        if deps.store is None:
            raise RuntimeError("not started")
        await deps.store.ping()
        return "ok"

    app = create_service_app(
        settings,
        title="chat auth",
        description=DESCRIPTION,
        lifespan=lifespan,
        metrics=metrics,
        checks={"redis": redis_check, "store": store_check},
        openapi_tags=TAGS,
    )
    app.include_router(build_router(logins))
    return app


async def _purge_refresh_tokens(store: AuthStore, interval: float) -> None:
    while True:
        stop_if_cancelled()
        try:
            removed = await store.purge_expired_refresh_tokens(utc_now())
            if removed:
                log.info("expired refresh tokens purged", extra={"count": removed})
        except Exception:  # a failed purge is retried next round; serving goes on
            log.exception("refresh token purge failed")
        await asyncio.sleep(interval)
