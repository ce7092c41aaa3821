"""Mint access tokens in tests with a throwaway key, the way the auth service does."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwk, jwt

from chat_shared.tokens import StaticKeySource


@dataclass
class TokenMinter:
    issuer: str = "chat-auth"
    audience: str = "chat"
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_jwk(self) -> dict[str, Any]:
        key = jwk.construct(self.public_pem.decode(), "ES256").to_dict()
        return {**key, "kid": self.kid, "alg": "ES256", "use": "sig"}

    def key_source(self) -> StaticKeySource:
        return StaticKeySource({self.kid: self.public_jwk()})

    def claims(self, user_id: str, username: str | None = None, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": user_id,
            "username": username or f"user-{user_id[:8]}",
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + 900,
            "jti": uuid.uuid4().hex,
            "typ": "access",
            "tv": 0,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, user_id: str, username: str | None = None, **overrides: Any) -> str:
        headers = {"kid": self.kid}
        return jwt.encode(
            self.claims(user_id, username, **overrides),
            self.private_pem.decode(),
            algorithm="ES256",
            headers=headers,
        )
