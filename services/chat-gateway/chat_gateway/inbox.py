"""Per-user inbox streams: what every device of a user resumes from.

The fan-out appends each message once per member with ``INBOX_APPEND_LUA``. A redo
after a crash must not append twice, so the script keeps, per user and ingest shard, a
watermark: the last shard entry applied and the inbox cursor it got. Shard entries
arrive in stream order, so an entry at or below the watermark is already there. The
script also returns the cursor of the entry before it (``prev``) and the gateways that
hold sessions of the user, all from the user's own hash slot.

Each entry stores its ``prev`` too. Trimming drops the oldest entries; a resuming
cursor is still covered when it is at or after the ``prev`` of the oldest entry kept,
otherwise something after it was trimmed and the client must ``resync``.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from chat_gateway.cursors import ORIGIN, Cursor, format_cursor, parse_cursor
from chat_shared.keys import user_cursors, user_inbox, user_inbox_state, user_sessions
from chat_shared.scripts import LuaScript

# KEYS: inbox, state, sessions.  ARGV: shard field, maxlen, then (shard entry id, payload)
# pairs in stream order: every message of one fan-out batch for this member, one call.
# Returns {gateway count, gateway..., cursor, prev, cursor, prev...}: one pair per
# message; cursor is '' for an entry applied before and superseded since.
INBOX_APPEND_LUA = """
local function older(a, b)
  local ams, aseq = string.match(a, '(%d+)-(%d+)')
  local bms, bseq = string.match(b, '(%d+)-(%d+)')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end
local mark = redis.call('HGET', KEYS[2], ARGV[1])
local mark_entry, mark_cursor, mark_prev
if mark then
  mark_entry, mark_cursor, mark_prev = string.match(mark, '(%S+) (%S+) ?(%S*)')
end
local last = redis.call('HGET', KEYS[2], 'last') or ''
local pairs_out = {}
local moved = false
for i = 3, #ARGV, 2 do
  local entry = ARGV[i]
  local cursor, prev = '', ''
  if mark_entry and entry == mark_entry then
    cursor, prev = mark_cursor, mark_prev
  elseif mark_entry and not older(mark_entry, entry) then
    cursor, prev = '', ''
  else
    prev = last
    cursor = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[i + 1],
                        'p', prev)
    last = cursor
    mark_entry, mark_cursor, mark_prev = entry, cursor, prev
    moved = true
  end
  pairs_out[#pairs_out + 1] = cursor
  pairs_out[#pairs_out + 1] = prev
end
if moved then
  redis.call('HSET', KEYS[2], 'last', last,
             ARGV[1], mark_entry .. ' ' .. mark_cursor .. ' ' .. mark_prev)
end
local gateways = redis.call('HVALS', KEYS[3])
local result = {#gateways}
for _, gateway in ipairs(gateways) do result[#result + 1] = gateway end
for _, value in ipairs(pairs_out) do result[#result + 1] = value end
return result
"""

# KEYS: cursors hash.  ARGV: device, cursor.  Moves the stored cursor forward only.
STORE_CURSOR_LUA = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local cms, cseq = string.match(current, '(%d+)-(%d+)')
  local nms, nseq = string.match(ARGV[2], '(%d+)-(%d+)')
  cms, cseq, nms, nseq = tonumber(cms), tonumber(cseq), tonumber(nms), tonumber(nseq)
  if nms < cms or (nms == cms and nseq <= cseq) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class StartPoint:
    cursor: Cursor
    resync: bool


class Inbox:
    def __init__(self, redis: Redis, *, maxlen: int) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self.append_script = LuaScript(redis, INBOX_APPEND_LUA)
        self._store_cursor = LuaScript(redis, STORE_CURSOR_LUA)

    async def page(self, user_id: str, after: Cursor, count: int) -> list[tuple[Cursor, bytes]]:
        """Entries strictly after ``after``, oldest first: (cursor, message json)."""
        entries = await self.redis.xrange(
            user_inbox(user_id), min=f"({format_cursor(after)}", max="+", count=count
        )
        page = []
        for entry_id, fields in entries:
            cursor = parse_cursor(entry_id)
            if cursor is not None:
                page.append((cursor, fields[b"m"]))
        return page

    async def start_point(
        self, user_id: str, device_id: str, requested: Cursor | None
    ) -> StartPoint:
        """Where a new session starts: the client's cursor, else this device's stored
        cursor, else the end of the inbox (a new device starts with what comes next)."""
        candidate = requested
        if candidate is None:
            stored = await self.redis.hget(user_cursors(user_id), device_id)
            candidate = parse_cursor(stored) if stored is not None else None
        end, covered_from = await self._bounds(user_id)
        if candidate is None or candidate > end:
            return StartPoint(end, resync=False)
        if candidate < covered_from:
            return StartPoint(end, resync=True)
        return StartPoint(candidate, resync=False)

    async def _bounds(self, user_id: str) -> tuple[Cursor, Cursor]:
        """The newest cursor, and the oldest cursor a session can resume from without
        missing anything (the predecessor of the oldest entry kept)."""
        try:
            info = await self.redis.xinfo_stream(user_inbox(user_id))
        except ResponseError:
            last = await self.redis.hget(user_inbox_state(user_id), "last")
            end = parse_cursor(last) if last else None
            return end or ORIGIN, end or ORIGIN
        end = parse_cursor(info.get("last-generated-id")) or ORIGIN
        first = info.get("first-entry")
        if not first:
            return end, end
        covered_from = parse_cursor(first[1].get(b"p", b"")) or ORIGIN
        return end, covered_from

    async def store_cursor(self, user_id: str, device_id: str, cursor: str) -> None:
        await self._store_cursor(keys=[user_cursors(user_id)], args=[device_id, cursor])

    def append_keys(self, user_id: str) -> list[str]:
        return [user_inbox(user_id), user_inbox_state(user_id), user_sessions(user_id)]
