"""The answer to a refresh, kept a few seconds, for the benign double refresh.

Two tabs refreshing at once, or a client retrying a refresh whose answer it lost,
present the same refresh token twice. Rotation alone would take the second use for a
theft and revoke the whole family, logging the user out. So each successful refresh
leaves its answer behind for ``CHAT_REFRESH_REUSE_GRACE_SECONDS``: a second use within
that window gets the very same pair, and a reuse after it still revokes the family.

The pair is stored encrypted with a key derived from the presented refresh token
itself (HKDF, then AES-GCM), under a key name derived from it too: whoever can read
Redis but does not hold the old token learns nothing, and whoever holds it could have
refreshed with it anyway.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.asyncio import Redis

from chat_auth.pairs import TokenPair

_INFO = b"chat refresh grace v1"
_NONCE_BYTES = 12
# How long a second use waits for the first one's answer to appear: the first is
# between marking the token used and storing its answer, a few milliseconds.
RECALL_WAIT_SECONDS = 2.0
_POLL_SECONDS = 0.02


def _name(token: str) -> str:
    digest = hashlib.sha256(b"grace:" + token.encode("utf-8", "surrogatepass")).hexdigest()
    return f"chat:refresh-grace:{digest}"


def _cipher(token: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        token.encode("utf-8", "surrogatepass")
    )
    return AESGCM(key)


class RefreshGrace:
    def __init__(self, redis: Redis, *, seconds: float) -> None:
        self.redis = redis
        self.seconds = seconds

    async def remember(self, token: str, pair: TokenPair) -> None:
        if self.seconds <= 0:
            return
        nonce = os.urandom(_NONCE_BYTES)
        plain = orjson.dumps(
            {"a": pair.access_token, "r": pair.refresh_token, "e": pair.expires_in}
        )
        sealed = nonce + _cipher(token).encrypt(nonce, plain, None)
        await self.redis.set(_name(token), sealed, px=max(1, int(self.seconds * 1000)))

    async def recall(self, token: str) -> TokenPair | None:
        """The pair the first use of ``token`` got, if that was within the window
        (waiting a moment for a use still in flight); None otherwise."""
        if self.seconds <= 0:
            return None
        deadline = time.monotonic() + RECALL_WAIT_SECONDS
        while True:
            sealed = await self.redis.get(_name(token))
            if sealed is not None:
                return _open(token, sealed)
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(_POLL_SECONDS)


def _open(token: str, sealed: bytes) -> TokenPair | None:
    try:
        plain = _cipher(token).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], None)
    except (InvalidTag, ValueError):
        return None
    fields = orjson.loads(plain)
    return TokenPair(access_token=fields["a"], refresh_token=fields["r"], expires_in=fields["e"])
