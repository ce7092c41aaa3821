"""Rate limits shared by every process: one GCRA cell per subject and action in Redis.

GCRA (the generic cell rate algorithm) keeps one number per key, the theoretical
arrival time (TAT) of the next request: each allowed request pushes it one emission
interval (1 / rate) later, and a request is refused while the TAT lies more than the
burst's worth of intervals in the future. It is a token bucket without a refill loop,
and the answer to a refused request is exact: how long until one would pass.

The clock is the Redis server's (``TIME`` inside the script), so every gateway and
history process counts against the same cell with the same clock. A key lives in its
subject's slot (``{u<id>}`` for a user), so a check never spans slots on a cluster,
and it expires once the cell is back to full burst: idle users cost nothing.

Checks made in the same event-loop turn travel in one pipelined round trip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from chat_shared.errors import RateLimited
from chat_shared.scripts import LuaScript, TurnBatch

if TYPE_CHECKING:  # settings import the ingest, which imports this module
    from chat_shared.settings import ChatSettings


# KEYS[1]: the cell.  ARGV[1]: emission interval (µs), ARGV[2]: burst, ARGV[3]: cost.
# Returns 0 when allowed (and charged), else the µs until the request would be allowed.
# Invariant: the stored TAT is never more than burst intervals ahead of now, so a
# refused request is not charged and cannot push the wait further out.
GCRA_LUA = """
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now_us then tat = now_us end
local new_tat = tat + interval * tonumber(ARGV[3])
local wait = new_tat - tolerance - now_us
if wait > 0 then return wait end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now_us) / 1000) + 1)
return 0
"""


@dataclass(frozen=True, slots=True)
class Rule:
    """``rate`` requests per second on average, ``burst`` at once after a quiet spell."""

    name: str
    rate: float
    burst: int

    @property
    def interval_us(self) -> int:
        return max(1, round(1_000_000 / self.rate))


def per_minute(name: str, count: float, burst: int | None = None) -> Rule:
    """``count`` a minute, with a burst of half of that (at least one) by default."""
    return Rule(name, count / 60, burst or max(1, round(count / 2)))


def send_rule(settings: ChatSettings) -> Rule:
    """Messages per user, whichever socket, REST call or process they come through."""
    return Rule("send", settings.send_rate, settings.send_burst)


def limit_key(subject: str, rule: Rule) -> str:
    """The cell of one subject (``u<user id>`` or ``a<address>``) under one rule."""
    return f"chat:limit:{{{subject}}}:{rule.name}"


def user_subject(user_id: str) -> str:
    # The user's own slot tag: the same slot as their inbox and sessions.
    return f"u{user_id}"


def address_subject(address: str) -> str:
    return f"a{address}"


class RateLimiter:
    def __init__(self, redis: Redis, *, max_batch: int = 256) -> None:
        self.redis = redis
        self._script = LuaScript(redis, GCRA_LUA)
        self._batch = TurnBatch(redis, max_batch=max_batch)

    async def wait_seconds(self, subject: str, rule: Rule, cost: int = 1) -> float:
        """0 when the request is allowed (and counted), else the seconds to wait."""
        waited_us = await self._batch.call(
            self._script, [limit_key(subject, rule)], [rule.interval_us, rule.burst, cost]
        )
        return math.ceil(int(waited_us) / 1000) / 1000

    async def check(self, subject: str, rule: Rule, cost: int = 1) -> None:
        """Raise :class:`RateLimited` (with the wait) when over the limit."""
        wait = await self.wait_seconds(subject, rule, cost)
        if wait > 0:
            raise RateLimited(wait, f"Too many requests ({rule.name}); retry later.")
