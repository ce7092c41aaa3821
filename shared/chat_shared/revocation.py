"""Revoking every access token of a user before it expires.

Access tokens carry ``tv``, the user's token version when the token was signed. The
auth service bumps the version when a password changes or the account is deleted and
publishes it here; verifiers refuse tokens with an older ``tv``. One GET per
verification, and a pub/sub message lets gateways close the sockets at once.
"""

from __future__ import annotations

from redis.asyncio import Redis

REVOCATION_CHANNEL = "chat:revocations"


def token_version_key(user_id: str) -> str:
    return f"chat:tokver:{user_id}"


class RedisRevocations:
    def __init__(self, redis: Redis, ttl_seconds: int = 3600) -> None:
        self.redis = redis
        # Only tokens that may still be alive need the record: keep it for the
        # access-token lifetime (plus margin), not forever.
        self.ttl_seconds = ttl_seconds

    async def min_version(self, user_id: str) -> int:
        value = await self.redis.get(token_version_key(user_id))
        return int(value) if value is not None else 0

    async def revoke(self, user_id: str, new_version: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(token_version_key(user_id), new_version, ex=self.ttl_seconds)
            pipe.publish(REVOCATION_CHANNEL, f"{user_id}:{new_version}")
            await pipe.execute()
