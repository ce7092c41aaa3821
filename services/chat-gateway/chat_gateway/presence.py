"""Presence: who is online, told to the people who share a conversation with them.

A user is online while at least one session is registered. Sessions are registered in
the user's hash (session -> gateway), which the fan-out also reads to route messages.
The first session makes the user online; removing the last makes them offline with
``last_active_at``. Both transitions are decided atomically in the user's slot.

A clean close (the client said goodbye) or a heartbeat timeout removes the session at
once. Any other disconnect leaves it lingering until its heartbeat would have expired,
so a quick reconnect causes no offline/online flicker. A gateway that dies stops
beating in ``PRESENCE_GATEWAYS_ZSET``; after the presence timeout another gateway
removes its sessions (under a lock), so nobody stays online forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat_gateway import frames
from chat_gateway.delivery import EventRouter
from chat_shared.ingest import format_timestamp
from chat_shared.keys import (
    LAST_ACTIVE_STREAM,
    PRESENCE_GATEWAYS_ZSET,
    gateway_cleanup_lock,
    gateway_deliveries,
    gateway_sessions,
    user_presence,
    user_sessions,
)
from chat_shared.membership import MembershipCache
from chat_shared.scripts import LuaScript
from chat_shared.tasks import stop_if_cancelled

if TYPE_CHECKING:
    from chat_gateway.connection import Connection

log = logging.getLogger(__name__)

REGISTER_LUA = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('HGET', KEYS[2], 'status') ~= 'online' then
  redis.call('HSET', KEYS[2], 'status', 'online')
  return 1
end
return 0
"""
UNREGISTER_LUA = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HLEN', KEYS[1]) == 0 then
  local was = redis.call('HGET', KEYS[2], 'status')
  redis.call('HSET', KEYS[2], 'status', 'offline', 'last_active_at', ARGV[2])
  if was == 'online' then return 1 end
end
return 0
"""

CLEAN_CLOSE_CODES = frozenset({1000, 1001})
LAST_ACTIVE_STREAM_MAXLEN = 100_000


@dataclass
class Lingering:
    user_id: str
    session_id: str
    deadline: float
    last_active_ms: int


class Presence:
    def __init__(
        self, redis: Redis, events: EventRouter, *, gateway_id: str, timeout: float, shards: int
    ) -> None:
        self.redis = redis
        self.events = events
        self.gateway_id = gateway_id
        self.timeout = timeout
        self.shards = shards
        self._register = LuaScript(redis, REGISTER_LUA)
        self._unregister = LuaScript(redis, UNREGISTER_LUA)
        self.membership = MembershipCache(redis, shards)
        self.lingering: dict[str, Lingering] = {}

    async def register(self, connection: Connection) -> None:
        await self.redis.sadd(
            gateway_sessions(self.gateway_id), f"{connection.user_id} {connection.session_id}"
        )
        went_online = await self._register(
            keys=[user_sessions(connection.user_id), user_presence(connection.user_id)],
            args=[connection.session_id, self.gateway_id],
        )
        if went_online:
            await self._announce(connection.user_id, "online", None)

    async def disconnected(self, connection: Connection, code: int | None) -> None:
        last_beat = connection.core.last_heartbeat
        if code in CLEAN_CLOSE_CODES or code == 4408:
            await self.remove(connection.user_id, connection.session_id, int(last_beat * 1000))
            return
        self.lingering[connection.session_id] = Lingering(
            connection.user_id,
            connection.session_id,
            last_beat + self.timeout,
            int(last_beat * 1000),
        )

    async def remove(
        self, user_id: str, session_id: str, last_active_ms: int, gateway_id: str | None = None
    ) -> None:
        went_offline = await self._unregister(
            keys=[user_sessions(user_id), user_presence(user_id)],
            args=[session_id, format_timestamp(last_active_ms)],
        )
        await self.redis.srem(
            gateway_sessions(gateway_id or self.gateway_id), f"{user_id} {session_id}"
        )
        if went_offline:
            await self.redis.xadd(
                LAST_ACTIVE_STREAM,
                {"u": user_id, "t": last_active_ms},
                maxlen=LAST_ACTIVE_STREAM_MAXLEN,
                approximate=True,
            )
            await self._announce(user_id, "offline", format_timestamp(last_active_ms))

    async def _announce(self, user_id: str, status: str, last_active_at: str | None) -> None:
        contacts = await self.contacts(user_id)
        contacts.discard(user_id)
        await self.events.send(contacts, frames.presence(user_id, status, last_active_at))

    async def contacts(self, user_id: str) -> set[str]:
        """Everyone who shares a conversation with the user (the user included)."""
        return await self.membership.contacts(user_id)

    async def status(self, user_ids: list[str]) -> list[dict[str, Any]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.hmget(user_presence(user_id), "status", "last_active_at")
                pipe.hlen(user_sessions(user_id))
            replies = await pipe.execute()
        result = []
        for index, user_id in enumerate(user_ids):
            status, last_active = replies[2 * index]
            online = status == b"online" and replies[2 * index + 1] > 0
            result.append(
                {
                    "user_id": user_id,
                    "status": "online" if online else "offline",
                    "last_active_at": last_active.decode() if last_active else None,
                }
            )
        return result

    async def run(self) -> None:
        """Beat for this gateway, expire lingering sessions, clean up dead gateways."""
        while True:
            stop_if_cancelled()
            try:
                await self._round()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("presence round failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(min(1.0, self.timeout / 4))

    async def _round(self) -> None:
        now = time.time()
        await self.redis.zadd(PRESENCE_GATEWAYS_ZSET, {self.gateway_id: int(now * 1000)})
        for key, entry in list(self.lingering.items()):
            if entry.deadline <= now:
                del self.lingering[key]
                await self.remove(entry.user_id, entry.session_id, entry.last_active_ms)
        cutoff = int((now - self.timeout) * 1000)
        for raw, score in await self.redis.zrangebyscore(
            PRESENCE_GATEWAYS_ZSET, "-inf", cutoff, withscores=True
        ):
            dead = raw.decode()
            if dead != self.gateway_id:
                await self._clean_dead_gateway(dead, int(score))

    async def _clean_dead_gateway(self, gateway_id: str, last_beat_ms: int) -> None:
        # Lingering sessions of a gateway that stopped gracefully end here too. The lock
        # keeps two survivors from announcing the same departures twice.
        lock = gateway_cleanup_lock(gateway_id)
        if not await self.redis.set(lock, self.gateway_id, nx=True, ex=30):
            return
        try:
            log.info("removing sessions of a dead gateway", extra={"dead_gateway": gateway_id})
            for member in await self.redis.smembers(gateway_sessions(gateway_id)):
                user_id, _, session_id = member.decode().partition(" ")
                await self.remove(user_id, session_id, last_beat_ms, gateway_id=gateway_id)
            # Each removal took its own member out of the set: a restarted gateway with
            # the same id may already be adding new ones.
            await self.redis.delete(gateway_deliveries(gateway_id))
            await self.redis.zrem(PRESENCE_GATEWAYS_ZSET, gateway_id)
        finally:
            await self.redis.delete(lock)

    async def clean_previous_incarnation(self) -> None:
        """Sessions a previous process with our id left behind (a crash and restart)."""
        await self._clean_dead_gateway(self.gateway_id, int(time.time() * 1000))
