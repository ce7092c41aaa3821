"""Delivery: this gateway's own stream, read with one blocking XREAD, dispatched to
the local sockets of each recipient (every device of that user on this gateway).

Records carry either an inbox entry (``m`` the message, ``r`` lines of
``user cursor prev``) or an event frame (``e`` the frame, ``u`` the user ids) such as
presence, typing and receipts.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat_gateway import frames
from chat_gateway.cursors import ORIGIN, parse_cursor
from chat_shared.keys import gateway_deliveries, user_sessions
from chat_shared.tasks import stop_if_cancelled

if TYPE_CHECKING:
    from chat_gateway.connection import Connection

log = logging.getLogger(__name__)

EVENT_STREAM_MAXLEN = 100_000


class LocalSessions:
    """The sockets this gateway holds, by user."""

    def __init__(self) -> None:
        self.by_user: dict[str, set[Connection]] = defaultdict(set)
        self.by_address: dict[str, int] = defaultdict(int)

    def add(self, connection: Connection) -> None:
        self.by_user[connection.user_id].add(connection)
        self.by_address[connection.address] += 1

    def remove(self, connection: Connection) -> None:
        sessions = self.by_user.get(connection.user_id)
        if sessions is not None:
            sessions.discard(connection)
            if not sessions:
                del self.by_user[connection.user_id]
        self.by_address[connection.address] -= 1
        if self.by_address[connection.address] <= 0:
            del self.by_address[connection.address]

    def of(self, user_id: str) -> Iterable[Connection]:
        return tuple(self.by_user.get(user_id, ()))

    def __len__(self) -> int:
        return sum(len(s) for s in self.by_user.values())

    def all(self) -> list[Connection]:
        return [c for sessions in self.by_user.values() for c in sessions]


class DeliveryReader:
    def __init__(self, redis: Redis, gateway_id: str, sessions: LocalSessions) -> None:
        self.redis = redis
        self.stream = gateway_deliveries(gateway_id)
        self.sessions = sessions

    async def run(self) -> None:
        last_id = "$"
        while True:
            stop_if_cancelled()
            try:
                reply = await self.redis.xread({self.stream: last_id}, count=1000, block=5000)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("delivery read failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(0.5)
                continue
            if not reply:
                continue
            for entry_id, fields in reply[0][1]:
                last_id = entry_id
                try:
                    self._dispatch(fields)
                except Exception:
                    log.exception("bad delivery record")

    def _dispatch(self, fields: dict[bytes, bytes]) -> None:
        event = fields.get(b"e")
        if event is not None:
            text = event.decode()
            for user_id in fields.get(b"u", b"").decode().split(","):
                for connection in self.sessions.of(user_id):
                    connection.push_event(text)
            return
        message_json = fields[b"m"].decode()  # once per record, not per recipient
        for line in fields[b"r"].decode().split("\n"):
            user_id, cursor_text, prev_text = ([*line.split(" "), "", ""])[:3]
            targets = self.sessions.of(user_id)
            if not targets:
                continue
            cursor = parse_cursor(cursor_text)
            if cursor is None:
                continue
            prev = parse_cursor(prev_text) or ORIGIN
            text = frames.message(cursor_text, message_json)
            for connection in targets:
                connection.deliver(cursor, prev, text)


class EventRouter:
    """Sends an event frame to the sessions of some users, wherever they are connected."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def send(self, user_ids: Iterable[str], text: str) -> int:
        users = sorted(set(user_ids))
        if not users:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id in users:
                pipe.hvals(user_sessions(user_id))
            replies = await pipe.execute()
        by_gateway: dict[str, list[str]] = defaultdict(list)
        for user_id, gateways in zip(users, replies, strict=True):
            for gateway in {g.decode() for g in gateways}:
                by_gateway[gateway].append(user_id)
        if not by_gateway:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for gateway, recipients in by_gateway.items():
                pipe.xadd(
                    gateway_deliveries(gateway),
                    {"e": text, "u": ",".join(recipients)},
                    maxlen=EVENT_STREAM_MAXLEN,
                    approximate=True,
                )
            await pipe.execute()
        return sum(len(r) for r in by_gateway.values())
