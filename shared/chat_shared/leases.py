"""Leases in Redis: a key holding its owner's name, with an expiry.

Whoever sets the key (``SET NX PX``) holds the lease until it expires; only the owner
may extend or drop it, which the two scripts check atomically, so a holder that
stalled past its expiry can never renew or delete a lease someone else took since.
A lease is advisory: work it guards must still be safe if two holders briefly
overlap (a stalled holder only learns it lost the lease on its next renewal).
"""

from __future__ import annotations

from redis.asyncio import Redis

from chat_shared.scripts import LuaScript

# KEYS[1]: the lease; ARGV[1]: owner, ARGV[2]: new expiry in ms.  1 if renewed.
RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1]: the lease; ARGV[1]: owner.  1 if dropped.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Leases:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._renew = LuaScript(redis, RENEW_LUA)
        self._release = LuaScript(redis, RELEASE_LUA)

    async def acquire(self, key: str, owner: str, ttl_ms: int) -> bool:
        return bool(await self.redis.set(key, owner, nx=True, px=ttl_ms))

    async def renew(self, key: str, owner: str, ttl_ms: int) -> bool:
        return bool(await self._renew(keys=[key], args=[owner, ttl_ms]))

    async def release(self, key: str, owner: str) -> bool:
        return bool(await self._release(keys=[key], args=[owner]))
