"""The ingest: one server-side script gives a message its place in its conversation.

The script runs atomically in the conversation's shard slot. It answers a retry with
the original message (dedup on conversation, sender and client id, kept 24 h), takes
the next ``seq`` with INCR, and appends the message to the shard stream, so the
stream's order is the seq order. Consumer groups ``history`` and ``fanout`` read it.

Calls made in the same event-loop turn travel together in one pipelined round trip
(:class:`chat_shared.scripts.TurnBatch`).

If a conversation's counter is missing (a Redis restart without AOF, an operator
mistake) the script refuses to guess; the ingest re-seeds the counter from the highest
seq anyone has seen (the store's, via :class:`SeqSource`, and the shard stream's) and
tries again. ``seq`` therefore never repeats.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from chat_shared.errors import Invalid, NotFound, TooLarge, Unavailable
from chat_shared.ids import new_id
from chat_shared.keys import (
    CONSUMER_GROUPS,
    ingest_shard_for,
    members_key,
    shard_dedup,
    shard_seq,
    shard_seq_floor,
    shard_stream,
)
from chat_shared.limits import RateLimiter, Rule, user_subject
from chat_shared.scripts import LuaScript, NotReplicated, Replication, TurnBatch

log = logging.getLogger(__name__)

DEDUP_TTL_SECONDS = 24 * 3600
MAX_CLIENT_ID_CHARS = 64
# The default longest body. With UTF-8's 4 bytes per character at worst, 25,000
# characters keep a full message partition (1,000 messages) under 100 MiB; see
# chat_history.settings for the bound.
DEFAULT_MAX_MESSAGE_CHARS = 25_000
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")

# KEYS: dedup, seq, stream, members, seq floor.  ARGV: id, conversation, sender,
# client_id, body, ttl, check_membership ("1" or "0").
# Returns {status, id, seq, created_ms}: 1 new, 0 duplicate, -1 no counter,
# -2 membership not cached, -3 sender not a member.
INGEST_LUA = """
if ARGV[7] == '1' then
  if redis.call('SISMEMBER', KEYS[4], ARGV[3]) == 0 then
    if redis.call('EXISTS', KEYS[4]) == 0 then return {-2, '', 0, 0} end
    return {-3, '', 0, 0}
  end
end
local found = redis.call('GET', KEYS[1])
if found then
  local id, seq, ms = string.match(found, '([^|]+)|([^|]+)|([^|]+)')
  return {0, id, tonumber(seq), tonumber(ms)}
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {-1, '', 0, 0}
end
local seq = redis.call('INCR', KEYS[2])
-- Never at or below what history has stored: a counter that went back (a failover to a
-- lagging replica, a restore) would hand out seqs that are taken.
local floor = tonumber(redis.call('GET', KEYS[5]) or '0')
if seq <= floor then
  seq = floor + 1
  redis.call('SET', KEYS[2], seq)
end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('XADD', KEYS[3], '*', 'id', ARGV[1], 'c', ARGV[2], 's', ARGV[3], 'k', ARGV[4],
           'q', seq, 't', ms, 'b', ARGV[5])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. seq .. '|' .. ms, 'EX', tonumber(ARGV[6]))
return {1, ARGV[1], seq, ms}
"""


class SeqSource(Protocol):
    """The highest seq of a conversation known outside Redis (0 when none)."""

    async def last_seq(self, conversation_id: str) -> int: ...


class MembershipLoader(Protocol):
    """Fills the members cache of a conversation from the owner of membership (history).

    Raises :class:`NotFound` when the conversation does not exist for this sender."""

    async def load_members(self, conversation_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class IngestedMessage:
    id: str
    conversation_id: str
    seq: int
    sender_id: str
    body: str
    client_id: str
    created_at_ms: int
    duplicate: bool = False

    @property
    def created_at(self) -> str:
        return format_timestamp(self.created_at_ms)

    def public(self) -> dict[str, Any]:
        """The message as the contract shows it."""
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "seq": self.seq,
            "sender_id": self.sender_id,
            "body": self.body,
            "client_id": self.client_id,
            "created_at": self.created_at,
        }


def format_timestamp(ms: int) -> str:
    """RFC 3339 UTC with milliseconds."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def message_from_entry(fields: dict[bytes, bytes]) -> IngestedMessage:
    """Decode one shard-stream entry (the fields the script wrote)."""
    return IngestedMessage(
        id=fields[b"id"].decode(),
        conversation_id=fields[b"c"].decode(),
        seq=int(fields[b"q"]),
        sender_id=fields[b"s"].decode(),
        body=fields[b"b"].decode("utf-8"),
        client_id=fields[b"k"].decode(),
        created_at_ms=int(fields[b"t"]),
    )


def validate_message(body: object, client_id: object, max_chars: int) -> tuple[str, str]:
    """The rules every path (REST and WebSocket) applies before the ingest."""
    if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
        raise Invalid(
            f"client_id must be 1-{MAX_CLIENT_ID_CHARS} characters of letters, digits and ._:-"
        )
    if not isinstance(body, str):
        raise Invalid("body must be a string")
    if len(body) > max_chars:
        raise TooLarge(f"body is longer than {max_chars} characters")
    if not body.strip():
        raise Invalid("body must not be empty or whitespace only")
    return body, client_id


class Ingest:
    def __init__(
        self,
        redis: Redis,
        *,
        shards: int,
        max_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
        dedup_ttl_seconds: int = DEDUP_TTL_SECONDS,
        max_batch: int = 256,
        replication: Replication | None = None,
        limiter: RateLimiter | None = None,
        send_rule: Rule | None = None,
    ) -> None:
        self.redis = redis
        # Every path of a send (any socket, a REST post, any process) passes here, so
        # the per-user send limit is counted once, in Redis, for all of them.
        self.limiter = limiter
        self.send_rule = send_rule
        # With replicas to wait for, a message is acknowledged only once they have it,
        # so it survives the loss of the primary (CHAT_REDIS_MIN_REPLICAS).
        self.replication = replication
        self.shards = shards
        self.max_chars = max_chars
        self.dedup_ttl_seconds = dedup_ttl_seconds
        self.max_batch = max_batch
        self._script = LuaScript(redis, INGEST_LUA)
        self._batch = TurnBatch(redis, max_batch=max_batch, replication=replication)
        self._reseeding: dict[str, asyncio.Future[int]] = {}

    def shard_for(self, conversation_id: str) -> int:
        return ingest_shard_for(conversation_id, self.shards)

    async def ensure_groups(self) -> None:
        """Create the consumer groups on every shard stream before anything is trimmed."""
        for shard in range(self.shards):
            for group in CONSUMER_GROUPS:
                try:
                    await self.redis.xgroup_create(
                        shard_stream(shard), group, id="0", mkstream=True
                    )
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

    async def ingest(
        self,
        conversation_id: str,
        sender_id: str,
        client_id: str,
        body: str,
        seq_source: SeqSource,
        members: MembershipLoader | None = None,
    ) -> IngestedMessage:
        """Order and store one message. With ``members``, the sender's membership is
        checked in the same atomic script (the gateway's hot path); without, the caller
        has checked it against the store already."""
        body, client_id = validate_message(body, client_id, self.max_chars)
        if self.limiter is not None and self.send_rule is not None:
            await self.limiter.check(user_subject(sender_id), self.send_rule)
        shard = self.shard_for(conversation_id)
        keys = [
            shard_dedup(shard, conversation_id, sender_id, client_id),
            shard_seq(shard, conversation_id),
            shard_stream(shard),
            members_key(conversation_id, self.shards),
            shard_seq_floor(shard, conversation_id),
        ]
        args = [
            new_id(),
            conversation_id,
            sender_id,
            client_id,
            body,
            self.dedup_ttl_seconds,
            "1" if members is not None else "0",
        ]
        result = await self._run(keys, args)
        for _ in range(2):
            status = int(result[0])
            if status == -2 and members is not None:
                await members.load_members(conversation_id)
            elif status == -1:
                await self.reseed(conversation_id, seq_source)
            else:
                break
            result = await self._run(keys, args)
        status = int(result[0])
        if status == -3:
            raise NotFound("No such conversation.")
        if status < 0:
            raise Unavailable("The conversation's state could not be restored; retry shortly.")
        _, message_id, seq, ms = result
        return IngestedMessage(
            id=message_id.decode() if isinstance(message_id, bytes) else str(message_id),
            conversation_id=conversation_id,
            seq=int(seq),
            sender_id=sender_id,
            body=body,
            client_id=client_id,
            created_at_ms=int(ms),
            duplicate=int(status) == 0,
        )

    async def reseed(self, conversation_id: str, seq_source: SeqSource) -> int:
        """Restore a missing counter from the highest seq seen anywhere; never lower it.

        Concurrent sends to the same conversation share one re-seed."""
        running = self._reseeding.get(conversation_id)
        if running is not None:
            return await asyncio.shield(running)
        task = asyncio.ensure_future(self._reseed(conversation_id, seq_source))
        self._reseeding[conversation_id] = task
        try:
            return await asyncio.shield(task)
        finally:
            if self._reseeding.get(conversation_id) is task:
                del self._reseeding[conversation_id]

    async def _reseed(self, conversation_id: str, seq_source: SeqSource) -> int:
        shard = self.shard_for(conversation_id)
        known = max(
            await seq_source.last_seq(conversation_id),
            await self._stream_last_seq(shard, conversation_id),
        )
        await self.redis.set(shard_seq(shard, conversation_id), known, nx=True)
        return known

    async def last_seq(self, conversation_id: str) -> int | None:
        """The counter as Redis holds it (None when missing)."""
        value = await self.redis.get(shard_seq(self.shard_for(conversation_id), conversation_id))
        return int(value) if value is not None else None

    async def _stream_last_seq(self, shard: int, conversation_id: str, scan: int = 10_000) -> int:
        # Entries still in the shard stream may not be persisted yet: count them too.
        highest = 0
        entries = await self.redis.xrevrange(shard_stream(shard), count=scan)
        wanted = conversation_id.encode()
        for _, fields in entries:
            if fields.get(b"c") == wanted:
                highest = max(highest, int(fields[b"q"]))
        return highest

    async def _run(self, keys: list[str], args: Sequence[Any]) -> list[Any]:
        try:
            result: list[Any] = await self._batch.call(self._script, keys, args)
        except NotReplicated as exc:
            log.warning("send not replicated in time", extra={"error": str(exc)})
            raise Unavailable("The message was not confirmed by a replica; retry it.") from exc
        return result
