"""The membership cache in Redis: who belongs to a conversation, for the hot paths.

History owns membership (its store is the truth). It writes this cache through after
every membership change, fills it when it finds a conversation missing, and rebuilds it
with a paged scan (one pod, in the background) whenever the ``members_loaded_key()``
marker is gone (Redis lost its data); never at start-up. The ingest script and the
gateway's fan-out only read it. Sets never expire; each holds :data:`MEMBERS_SENTINEL`
besides the user ids, so "cached, nobody left" differs from "not cached".

Two writers can race: a change written to the store, then a fill that read the store
*before* that change, would leave a stale set forever (no TTL). So every write carries
a ticket taken *before* its writer read the store, and the set only accepts a ticket
newer than the one it holds. Whatever order the writes land in, the set ends with the
state read after the last change. Tickets come from the server clock and a counter,
so they keep growing even if the counter itself is lost.

The members set and its ticket share the shard's hash tag (one slot, one script). The
kind and the per-user conversation sets live elsewhere and are written after the set,
idempotently; the per-user sets are an index for presence, not an authorisation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from chat_shared.keys import (
    MEMBERS_SENTINEL,
    MEMBERS_TICKET_COUNTER,
    conversation_kind_key,
    members_key,
    members_loaded_key,
    members_ticket_key,
    user_conversations,
)
from chat_shared.scripts import LuaScript, run_batch

# KEYS[1]: counter.  Returns max(now in µs, last + 1) and stores it.
TICKET_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local ticket = math.max(now, last + 1)
redis.call('SET', KEYS[1], string.format('%.0f', ticket))
return ticket
"""

# KEYS[1]: members set, KEYS[2]: its ticket.  ARGV[1]: ticket, ARGV[2..]: new members
# (the sentinel included).  Returns {0} when a newer write is already there, else
# {1, old members...}.
REPLACE_LUA = """
local held = tonumber(redis.call('GET', KEYS[2]) or '0')
if held >= tonumber(ARGV[1]) then return {0} end
local old = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
local chunk = {}
for i = 2, #ARGV do
  chunk[#chunk + 1] = ARGV[i]
  if #chunk == 500 then redis.call('SADD', KEYS[1], unpack(chunk)); chunk = {} end
end
if #chunk > 0 then redis.call('SADD', KEYS[1], unpack(chunk)) end
redis.call('SET', KEYS[2], ARGV[1])
local reply = {1}
for _, member in ipairs(old) do reply[#reply + 1] = member end
return reply
"""


@dataclass(frozen=True, slots=True)
class MembershipRecord:
    """One conversation's membership as the store holds it."""

    conversation_id: str
    kind: str
    members: frozenset[str]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class MembershipCache:
    def __init__(self, redis: Redis, shards: int) -> None:
        self.redis = redis
        self.shards = shards
        self._ticket_script = LuaScript(redis, TICKET_LUA)
        self._replace_script = LuaScript(redis, REPLACE_LUA)

    # Reads -----------------------------------------------------------------------

    async def members(self, conversation_id: str) -> frozenset[str] | None:
        """The member ids, or ``None`` when the conversation is not cached."""
        found = await self.redis.smembers(members_key(conversation_id, self.shards))
        if not found:
            return None
        return frozenset(_text(m) for m in found) - {MEMBERS_SENTINEL}

    async def is_member(self, conversation_id: str, user_id: str) -> bool | None:
        """``None`` when the conversation is not cached."""
        is_member, cached = await self.redis.smismember(
            members_key(conversation_id, self.shards), [user_id, MEMBERS_SENTINEL]
        )
        if not cached:
            return None
        return bool(is_member)

    async def kind(self, conversation_id: str) -> str | None:
        value = await self.redis.get(conversation_kind_key(conversation_id))
        return _text(value) if value is not None else None

    async def conversations_of(self, user_id: str) -> frozenset[str]:
        found = await self.redis.smembers(user_conversations(user_id))
        return frozenset(_text(c) for c in found)

    async def contacts(self, user_id: str) -> set[str]:
        """Everyone who shares a conversation with the user (the user included): who
        may see the user's presence and last-active time, in the gateway and in auth
        alike."""
        conversations = [_text(c) for c in await self.redis.smembers(user_conversations(user_id))]
        if not conversations:
            return {user_id}
        async with self.redis.pipeline(transaction=False) as pipe:
            for conversation in conversations:
                pipe.smembers(members_key(conversation, self.shards))
            replies = await pipe.execute()
        found = {user_id}
        for members in replies:
            found.update(_text(m) for m in members)
        found.discard(MEMBERS_SENTINEL)
        return found

    async def is_loaded(self) -> bool:
        return bool(await self.redis.exists(members_loaded_key()))

    # Writes ----------------------------------------------------------------------

    async def ticket(self) -> int:
        """Take a ticket. Take it *before* reading the state you are about to write."""
        return int(await self._ticket_script(keys=[MEMBERS_TICKET_COUNTER]))

    async def replace(
        self,
        conversation_id: str,
        kind: str,
        members: Iterable[str],
        *,
        ticket: int | None = None,
    ) -> bool:
        """Cache a conversation's members; ``False`` when a newer write won.

        Without ``ticket`` the write counts as the newest (the caller holds the
        state as of now)."""
        record = MembershipRecord(conversation_id, kind, frozenset(members))
        return await self.replace_many([record], ticket=ticket) == 1

    async def replace_many(
        self, records: Sequence[MembershipRecord], *, ticket: int | None = None
    ) -> int:
        """Cache several conversations in two pipelined round trips; returns how many
        were written (the others already held a newer state)."""
        if not records:
            return 0
        if ticket is None:
            ticket = await self.ticket()
        replies = await run_batch(
            self.redis,
            [
                (
                    self._replace_script,
                    [
                        members_key(record.conversation_id, self.shards),
                        members_ticket_key(record.conversation_id, self.shards),
                    ],
                    [ticket, MEMBERS_SENTINEL, *sorted(record.members)],
                )
                for record in records
            ],
        )
        written = 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for record, reply in zip(records, replies, strict=True):
                if int(reply[0]) != 1:
                    continue
                written += 1
                old = {_text(m) for m in reply[1:]} - {MEMBERS_SENTINEL}
                pipe.set(conversation_kind_key(record.conversation_id), record.kind)
                for user_id in record.members:
                    pipe.sadd(user_conversations(user_id), record.conversation_id)
                for user_id in old - record.members:
                    pipe.srem(user_conversations(user_id), record.conversation_id)
            await pipe.execute()
        return written

    async def mark_loaded(self) -> None:
        await self.redis.set(members_loaded_key(), "1")
