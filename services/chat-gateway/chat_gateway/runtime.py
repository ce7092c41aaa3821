"""Everything a session needs, built once per gateway process in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx2
from redis.asyncio import Redis

from chat_gateway.delivery import EventRouter, LocalSessions
from chat_gateway.inbox import Inbox
from chat_gateway.metrics import GatewayMetrics
from chat_gateway.presence import Presence
from chat_gateway.protocol import SessionLimits
from chat_gateway.receipts import Receipts
from chat_gateway.settings import GatewaySettings
from chat_shared.ingest import Ingest
from chat_shared.limits import RateLimiter, Rule, per_minute
from chat_shared.tokens import TokenVerifier


@dataclass(frozen=True)
class GatewayRules:
    """The per-user and per-address limits counted in Redis (over every process)."""

    read: Rule
    auth: Rule
    handshake_user: Rule
    handshake_address: Rule

    @classmethod
    def of(cls, settings: GatewaySettings) -> GatewayRules:
        return cls(
            read=Rule("read", settings.read_rate, settings.read_burst),
            auth=per_minute("auth", settings.auth_frames_per_minute),
            handshake_user=per_minute("handshake", settings.handshakes_per_minute_per_user),
            handshake_address=per_minute("handshake", settings.handshakes_per_minute_per_address),
        )


@dataclass
class GatewayRuntime:
    settings: GatewaySettings
    gateway_id: str
    redis: Redis
    http: httpx2.AsyncClient
    verifier: TokenVerifier
    ingest: Ingest
    inbox: Inbox
    sessions: LocalSessions
    events: EventRouter
    receipts: Receipts
    presence: Presence
    metrics: GatewayMetrics
    limits: SessionLimits
    limiter: RateLimiter
    rules: GatewayRules
    accepting: bool = True
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
