"""Login and sign-up throttling with Redis counters that expire.

Failed logins count per login name (what the client typed, folded) and per client
address in fixed windows. Keying by the typed name rather than the account means an
unknown name is throttled exactly like a real one, so a 429 never tells whether an
account exists. A window always ends, so an attacker can slow a victim down but
never lock them out for good, and a successful login clears its name's counter.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from chat_auth.settings import AuthSettings
from chat_shared.errors import RateLimited
from chat_shared.scripts import LuaScript, run_batch

_PREFIX = "chat:auth"

# KEYS[1]: a counter; ARGV[1]: its window in seconds. Returns {count, ttl}. One key per
# call (each counter is its own slot on a cluster); atomic, so a counter never exists
# without its expiry. NX: the window starts at the first count and is never extended,
# which is what guarantees a lock-out ends.
COUNT_LUA = """
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1], 'NX')
return {count, redis.call('TTL', KEYS[1])}
"""


def _digest(value: str) -> str:
    # Bounded, printable key parts whatever the client typed.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def login_name_key(login: str) -> str:
    return f"{_PREFIX}:fail:name:{_digest(login.strip().lower())}"


def password_check_key(user_id: str) -> str:
    """Failures of ``current_password`` on a password change (a stolen access token
    must not become a free password oracle)."""
    return f"{_PREFIX}:fail:user:{user_id}"


def address_key(address: str) -> str:
    return f"{_PREFIX}:fail:addr:{_digest(address)}"


def signup_key(address: str) -> str:
    return f"{_PREFIX}:signup:addr:{_digest(address)}"


class Throttle:
    def __init__(self, redis: Redis, settings: AuthSettings) -> None:
        self.redis = redis
        self.per_name = settings.login_failures_per_account
        self.per_address = settings.login_failures_per_address
        self.window = settings.login_failure_window_seconds
        self.signups = settings.signups_per_address
        self.signup_window = settings.signup_window_seconds
        self._count = LuaScript(redis, COUNT_LUA)

    async def check_login(self, *, name_key: str, address: str) -> None:
        """Raise :class:`RateLimited` while either counter is over its limit."""
        addr_key = address_key(address)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(name_key)
            pipe.ttl(name_key)
            pipe.get(addr_key)
            pipe.ttl(addr_key)
            name_count, name_ttl, addr_count, addr_ttl = await pipe.execute()
        waits = []
        if name_count is not None and int(name_count) >= self.per_name:
            waits.append(await self._expiring(name_key, name_ttl))
        if addr_count is not None and int(addr_count) >= self.per_address:
            waits.append(await self._expiring(addr_key, addr_ttl))
        if waits:
            raise RateLimited(
                max(max(waits), 1), "Too many failed sign-ins; wait before trying again."
            )

    async def record_login_failure(self, *, name_key: str, address: str) -> None:
        keys = (name_key, address_key(address))
        await run_batch(self.redis, [(self._count, [key], [self.window]) for key in keys])

    async def clear(self, name_key: str) -> None:
        await self.redis.delete(name_key)

    async def count_signup(self, address: str) -> None:
        """Count a sign-up attempt; raise :class:`RateLimited` past the limit."""
        count, ttl = await self._count([signup_key(address)], [self.signup_window])
        if int(count) > self.signups:
            raise RateLimited(max(ttl, 1), "Too many sign-ups from this address; retry later.")

    async def _expiring(self, key: str, ttl: int) -> int:
        # Belt and braces: a counter left without an expiry would lock out forever.
        if ttl < 0:
            await self.redis.expire(key, self.window)
            return self.window
        return ttl
