"""Revoking access tokens before they expire: all of a user's, or one session's.

Access tokens carry ``tv``, the user's token version when the token was signed, and
``sid``, the sign-in session (the refresh-token family) they belong to. The auth
service bumps the version when a password changes or the account is deleted, and
revokes a session when it logs out or its refresh token is replayed; verifiers refuse
tokens with an older ``tv`` or a revoked ``sid``. One pipelined round trip per
verification; a pub/sub message lets gateways close the sockets at once.
"""

from __future__ import annotations

from redis.asyncio import Redis

REVOCATION_CHANNEL = "chat:revocations"  # "<user id>:<version>"
SESSION_REVOCATION_CHANNEL = "chat:revocations:sessions"  # "<session id>"


def token_version_key(user_id: str) -> str:
    return f"chat:tokver:{user_id}"


def revoked_session_key(session_id: str) -> str:
    return f"chat:revoked-session:{session_id}"


class RedisRevocations:
    def __init__(self, redis: Redis, ttl_seconds: int = 3600) -> None:
        self.redis = redis
        # Only tokens that may still be alive need the record: keep it for the
        # access-token lifetime (plus margin), not forever.
        self.ttl_seconds = ttl_seconds

    async def is_revoked(self, user_id: str, version: int, session_id: str | None) -> bool:
        """Whether a token of this user, version and session may no longer be used."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(token_version_key(user_id))
            if session_id is not None:
                pipe.exists(revoked_session_key(session_id))
            replies = await pipe.execute()
        if replies[0] is not None and version < int(replies[0]):
            return True
        return session_id is not None and bool(replies[1])

    async def revoked_among(self, tokens: list[tuple[str, int, str | None]]) -> list[bool]:
        """``is_revoked`` for many (user, version, session) at once: one pipeline."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id, _, session_id in tokens:
                pipe.get(token_version_key(user_id))
                pipe.exists(revoked_session_key(session_id or ""))
            replies = await pipe.execute()
        found = []
        for index, (_, version, session_id) in enumerate(tokens):
            floor, session_gone = replies[2 * index], replies[2 * index + 1]
            older = floor is not None and version < int(floor)
            found.append(older or (session_id is not None and bool(session_gone)))
        return found

    async def revoke_session(self, session_id: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(revoked_session_key(session_id), 1, ex=self.ttl_seconds)
            pipe.publish(SESSION_REVOCATION_CHANNEL, session_id)
            await pipe.execute()

    async def revoke(self, user_id: str, new_version: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(token_version_key(user_id), new_version, ex=self.ttl_seconds)
            pipe.publish(REVOCATION_CHANNEL, f"{user_id}:{new_version}")
            await pipe.execute()
