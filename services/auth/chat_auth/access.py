"""Access tokens: short-lived ES256 JWTs with exactly the claims the shared verifier
checks (chat_shared.tokens)."""

from __future__ import annotations

import time
import uuid

from chat_auth.keyring import Keyring
from chat_shared.ports.auth import UserRecord
from chat_shared.tokens import ACCESS_TOKEN_TYPE


class AccessTokens:
    def __init__(self, keyring: Keyring, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds

    def issue(self, user: UserRecord, session_id: str) -> str:
        """An access token of ``user`` in the sign-in session ``session_id``."""
        now = int(time.time())
        return self.keyring.sign(
            {
                "sub": user.id,
                "username": user.username,
                "iss": self.issuer,
                "aud": self.audience,
                "iat": now,
                "exp": now + self.ttl_seconds,
                "jti": uuid.uuid4().hex,
                "typ": ACCESS_TOKEN_TYPE,
                # The user's token version: bumping it revokes every token signed before.
                "tv": user.token_version,
                # The refresh family it came from: logging out revokes exactly these.
                "sid": session_id,
            }
        )
