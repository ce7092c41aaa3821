"""Login and sign-up throttling that slows attackers down and never locks owners out.

Failed sign-ins count in three Redis counters, each in a window that always ends:

- Per (login name, address) pair. After ``CHAT_LOGIN_FREE_FAILURES`` failures, each
  failure makes that pair wait twice as long as the one before (1 s, 2 s, 4 s... up to
  ``CHAT_LOGIN_BACKOFF_MAX_SECONDS``), answered 429 with Retry-After. This stops one
  guesser on one account; the owner, on another address, is not affected.
- Per login name, over every address. Past ``CHAT_LOGIN_FAILURES_PER_ACCOUNT``, each
  attempt on that name waits ``CHAT_LOGIN_ACCOUNT_DELAY_SECONDS`` before its password
  is checked, and is never refused: guessing from many addresses gets slow, and the
  owner typing the right password still gets in, a moment later.
- Per address, over every name. Past ``CHAT_LOGIN_FAILURES_PER_ADDRESS`` (high enough
  for an office or a carrier NAT), 429: one address cannot try passwords against many
  accounts.

Names are keyed as typed, canonicalised (NFKC, case-folded, trimmed) and hashed, so an
unknown name is throttled exactly like a real one and a 429 never tells whether an
account exists. A successful login clears its name's and its pair's counters.
"""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata

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


def canonical_login(login: str) -> str:
    """One spelling per name: compatibility forms folded, case folded, outer space cut."""
    return unicodedata.normalize("NFKC", login).casefold().strip()


def _digest(value: str) -> str:
    # Bounded, printable key parts whatever the client typed.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def login_name_key(login: str) -> str:
    return f"{_PREFIX}:fail:name:{_digest(canonical_login(login))}"


def pair_key(name_key: str, address: str) -> str:
    return f"{_PREFIX}:fail:pair:{_digest(name_key + chr(0) + address)}"


def pair_block_key(name_key: str, address: str) -> str:
    return f"{_PREFIX}:wait:pair:{_digest(name_key + chr(0) + address)}"


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
        self.free_failures = settings.login_free_failures
        self.backoff_max = settings.login_backoff_max_seconds
        self.per_name = settings.login_failures_per_account
        self.account_delay = settings.login_account_delay_seconds
        self.per_address = settings.login_failures_per_address
        self.window = settings.login_failure_window_seconds
        self.signups = settings.signups_per_address
        self.signup_window = settings.signup_window_seconds
        self._count = LuaScript(redis, COUNT_LUA)

    async def check_login(self, *, name_key: str, address: str) -> None:
        """Raise :class:`RateLimited` while this pair waits out its backoff or the
        address is over its limit; wait a moment when the name is under attack."""
        addr_key = address_key(address)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.pttl(pair_block_key(name_key, address))
            pipe.get(addr_key)
            pipe.ttl(addr_key)
            pipe.get(name_key)
            pair_wait_ms, addr_count, addr_ttl, name_count = await pipe.execute()
        if pair_wait_ms > 0:
            raise RateLimited(
                pair_wait_ms / 1000, "Too many failed sign-ins; wait before trying again."
            )
        if addr_count is not None and int(addr_count) >= self.per_address:
            raise RateLimited(
                max(await self._expiring(addr_key, addr_ttl), 1),
                "Too many failed sign-ins from this address; wait before trying again.",
            )
        if name_count is not None and int(name_count) >= self.per_name:
            await asyncio.sleep(self.account_delay)

    async def check_password_check(self, key: str, *, address: str) -> None:
        """The current-password check of a signed-in user: whoever holds a stolen
        access token must not get a password oracle, from any number of addresses, so
        past the per-account limit it is refused (the owner is signed in already and
        loses nothing but the change, until the window ends)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            count, ttl = await pipe.execute()
        if count is not None and int(count) >= self.per_name:
            raise RateLimited(
                max(await self._expiring(key, ttl), 1),
                "Too many wrong passwords; wait before trying again.",
            )
        await self.check_login(name_key=key, address=address)

    async def record_login_failure(self, *, name_key: str, address: str) -> None:
        keys = (name_key, address_key(address), pair_key(name_key, address))
        results = await run_batch(self.redis, [(self._count, [key], [self.window]) for key in keys])
        pair_failures = int(results[2][0])
        if pair_failures > self.free_failures:
            doublings = min(pair_failures - self.free_failures - 1, 30)
            wait = min(self.backoff_max, 2**doublings)
            await self.redis.set(pair_block_key(name_key, address), 1, px=int(wait * 1000))

    async def clear(self, name_key: str, address: str) -> None:
        # One DEL per key: the keys live in different slots on a cluster.
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in (name_key, pair_key(name_key, address), pair_block_key(name_key, address)):
                pipe.delete(key)
            await pipe.execute()

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
