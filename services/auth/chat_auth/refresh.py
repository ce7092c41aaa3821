"""Opaque refresh tokens in rotating families (RFC 9700 section 4.14).

A token is ``<family id>.<random secret>``; only its SHA-256 is stored. Each use
consumes the token and issues the next one of the same family. Presenting a token
that was already consumed means two parties hold the family (a thief and the user):
the whole family is revoked and both have to sign in again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from chat_shared.errors import Unauthorized
from chat_shared.ids import id_timestamp_ms, is_id, new_id
from chat_shared.ports.auth import RefreshTokenRecord, RefreshTokenStore

log = logging.getLogger(__name__)

_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")  # token_urlsafe(32)


class InvalidRefreshToken(Unauthorized):
    def __init__(self) -> None:
        super().__init__("Invalid, expired or revoked refresh token; sign in again.")


class RefreshReplayed(InvalidRefreshToken):
    """A used token came back. Nothing is revoked yet: the caller tells a benign
    double use from a theft (see chat_auth.refresh_grace)."""

    def __init__(self, record: RefreshTokenRecord) -> None:
        super().__init__()
        self.family_id = record.family_id
        self.user_id = record.user_id


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_family(token: str) -> str | None:
    family_id, dot, secret = token.partition(".")
    if not dot or not is_id(family_id) or not _SECRET.match(secret):
        return None
    return family_id


def utc_now() -> datetime:
    moment = datetime.now(UTC)
    # Both engines keep milliseconds; equal precision keeps records comparable.
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class RefreshTokens:
    def __init__(
        self,
        store: RefreshTokenStore,
        *,
        ttl_seconds: int,
        family_lifetime_seconds: int = 90 * 24 * 3600,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.ttl = timedelta(seconds=ttl_seconds)
        self.family_lifetime = timedelta(seconds=family_lifetime_seconds)
        self.clock = clock

    async def issue(self, user_id: str, family_id: str | None = None) -> str:
        """A new token: the first of a new family, or the next one of ``family_id``."""
        family = family_id or new_id()
        token = f"{family}.{secrets.token_urlsafe(32)}"
        now = self.clock()
        await self.store.add_refresh_token(
            RefreshTokenRecord(
                family_id=family,
                token_hash=token_hash(token),
                user_id=user_id,
                issued_at=now,
                expires_at=now + self.ttl,
                used=False,
                family_revoked=False,
            )
        )
        return token

    async def consume(self, token: str) -> RefreshTokenRecord:
        """Use a token up. Raises :class:`InvalidRefreshToken` unless it is live, and
        revokes its family when it had been used before."""
        record = await self._lookup(token)
        now = self.clock()
        if record is None or record.family_revoked or record.expires_at <= now:
            raise InvalidRefreshToken
        born = datetime.fromtimestamp(id_timestamp_ms(record.family_id) / 1000, UTC)
        if now - born > self.family_lifetime:
            # Rotation could keep a session alive forever; a sign-in has an end.
            raise InvalidRefreshToken
        if record.used or not await self.store.mark_refresh_token_used(
            record.family_id, record.token_hash
        ):
            raise RefreshReplayed(record)
        return record

    async def revoke(self, token: str) -> str | None:
        """Logout: revoke the token's family if it is one of ours (its id is returned);
        silent otherwise."""
        record = await self._lookup(token)
        if record is None:
            return None
        await self.store.revoke_refresh_family(record.family_id)
        return record.family_id

    async def revoke_family(self, family_id: str) -> None:
        await self.store.revoke_refresh_family(family_id)

    async def revoke_user(self, user_id: str) -> int:
        return await self.store.revoke_user_refresh_families(user_id)

    async def _lookup(self, token: str) -> RefreshTokenRecord | None:
        family_id = parse_family(token)
        if family_id is None:
            return None
        digest = token_hash(token)
        record = await self.store.get_refresh_token(family_id, digest)
        # The store matched on the digest already; the constant-time compare costs
        # nothing and keeps the check honest if an engine ever matches loosely.
        if record is None or not hmac.compare_digest(record.token_hash, digest):
            return None
        return record
