"""Access-token verification, shared by every service.

The rules (RFC 8725): the algorithm comes from our allow-list, never from the token;
HMAC and ``none`` are refused outright; keys come only from our own JWKS (``jku``,
``x5u`` and ``jwk`` headers are ignored); ``exp``, ``iat``, ``iss``, ``aud``, ``sub``
and ```jti`` are required and checked; ``typ`` must say the token is an access token,
so no other kind of token we sign is ever accepted in its place. An unknown ``kid``
triggers at most one JWKS refresh per ``min_refresh_seconds``, which is how key
rotation reaches running services.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
from jose import jwk, jwt
from jose.exceptions import JOSEError

from chat_shared.errors import Unauthorized

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS: tuple[str, ...] = ("ES256", "RS256")
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret


class TokenError(Unauthorized):
    """The token is missing, malformed, expired, or not ours."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified access token speaks for."""

    user_id: str
    username: str
    token_id: str
    issued_at: int
    expires_at: int
    token_version: int = 0
    # The sign-in session (refresh-token family) the token was issued to; logging out
    # revokes it. None for tokens signed before sessions were named.
    session_id: str | None = None


class KeySource(Protocol):
    """Where verification keys (JWKs, public only) come from."""

    async def keys(self, *, refresh: bool = False) -> Mapping[str, dict[str, Any]]:
        """Keys by ``kid``. ``refresh`` asks for a fresh copy (the caller rate-limits)."""
        ...


class StaticKeySource:
    """Keys known in-process (the auth service verifies its own tokens this way)."""

    def __init__(self, jwks: Mapping[str, dict[str, Any]]) -> None:
        self._keys = dict(jwks)

    async def keys(self, *, refresh: bool = False) -> Mapping[str, dict[str, Any]]:
        return self._keys


class JwksKeySource:
    """Fetches and caches the auth service's JWKS over HTTP.

    A copy older than ``max_age_seconds`` is fetched again before use, so a key that
    auth stopped publishing (retired, or removed after a leak) stops being trusted
    within that time. If auth cannot be reached then, the old copy goes on serving and
    the next use tries again: an auth outage must not log everybody out.
    """

    def __init__(
        self,
        url: str,
        http: httpx2.AsyncClient,
        *,
        max_age_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.http = http
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._cache: dict[str, dict[str, Any]] | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._cache is not None and self._clock() - self._fetched_at < self.max_age_seconds

    async def keys(self, *, refresh: bool = False) -> Mapping[str, dict[str, Any]]:
        if self._fresh() and not refresh:
            assert self._cache is not None
            return self._cache
        async with self._lock:
            if self._fresh() and not refresh:
                assert self._cache is not None
                return self._cache
            try:
                response = await self.http.get(self.url, timeout=5.0)
                response.raise_for_status()
            except httpx2.HTTPError:
                if self._cache is None or refresh:
                    raise
                log.warning("jwks refresh failed; using the copy we have")
                self._fetched_at = self._clock()  # try again after another max age
                return self._cache
            self._cache = {
                key["kid"]: key
                for key in response.json().get("keys", [])
                if isinstance(key, dict) and isinstance(key.get("kid"), str)
            }
            self._fetched_at = self._clock()
            return self._cache


class RevocationList(Protocol):
    async def is_revoked(self, user_id: str, version: int, session_id: str | None) -> bool:
        """Tokens of this user with a lower ``tv`` claim, or of a revoked ``sid``."""
        ...


class TokenVerifier:
    def __init__(
        self,
        keys: KeySource,
        *,
        revocations: RevocationList | None = None,
        issuer: str,
        audience: str,
        algorithms: Sequence[str] = ALLOWED_ALGORITHMS,
        min_refresh_seconds: float = 30.0,
        leeway_seconds: int = 5,
        clock: Any = time.monotonic,
    ) -> None:
        unsafe = [a for a in algorithms if a not in ALLOWED_ALGORITHMS]
        if unsafe:
            raise ValueError(f"algorithms not allowed: {unsafe}")
        self._keys = keys
        self._revocations = revocations
        self.issuer = issuer
        self.audience = audience
        self.algorithms = tuple(algorithms)
        self.min_refresh_seconds = min_refresh_seconds
        self.leeway_seconds = leeway_seconds
        self._clock = clock
        self._last_refresh = float("-inf")
        # Building a key object from a JWK costs more than the signature check itself.
        self._constructed: dict[tuple[str, str, tuple[tuple[str, str], ...]], Any] = {}

    async def verify(self, token: str | None) -> Principal:
        """Return the principal of a valid access token or raise :class:`TokenError`."""
        if not token:
            raise TokenError("Missing access token.")
        if len(token) > 8192:
            raise TokenError("Invalid access token.")
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError as exc:
            raise TokenError("Invalid access token.") from exc
        alg = header.get("alg")
        kid = header.get("kid")
        if alg not in self.algorithms or not isinstance(kid, str):
            raise TokenError("Invalid access token.")
        key = await self._key_for(kid)
        if key is None or key.get("alg", alg) != alg:
            raise TokenError("Invalid access token.")
        try:
            claims = jwt.decode(
                token,
                self._key_object(kid, alg, key),
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require_exp": True,
                    "require_iat": True,
                    "require_iss": True,
                    "require_aud": True,
                    "require_sub": True,
                    "require_jti": True,
                    "verify_nbf": True,
                    "leeway": self.leeway_seconds,
                },
            )
        except JOSEError as exc:
            raise TokenError("Invalid or expired access token.") from exc
        if claims.get("typ") != ACCESS_TOKEN_TYPE:
            raise TokenError("Not an access token.")
        username = claims.get("username")
        version = claims.get("tv", 0)
        session_id = claims.get("sid")
        if not isinstance(username, str) or not isinstance(version, int):
            raise TokenError("Invalid access token.")
        if session_id is not None and not isinstance(session_id, str):
            raise TokenError("Invalid access token.")
        revocations = self._revocations
        if revocations is not None and await revocations.is_revoked(
            str(claims["sub"]), version, session_id
        ):
            raise TokenError("This session has been revoked.")
        return Principal(
            user_id=str(claims["sub"]),
            username=username,
            token_id=str(claims["jti"]),
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
            token_version=version,
            session_id=session_id,
        )

    def _key_object(self, kid: str, alg: str, key: dict[str, Any]) -> Any:
        identity = (kid, alg, tuple(sorted((k, str(v)) for k, v in key.items())))
        constructed = self._constructed.get(identity)
        if constructed is None:
            constructed = jwk.construct(key, alg)
            self._constructed[identity] = constructed
        return constructed

    async def _key_for(self, kid: str) -> dict[str, Any] | None:
        try:
            keys = await self._keys.keys()
            if kid in keys:
                return keys[kid]
            now = self._clock()
            if now - self._last_refresh < self.min_refresh_seconds:
                return None
            self._last_refresh = now
            keys = await self._keys.keys(refresh=True)
        except (httpx2.HTTPError, ValueError) as exc:
            raise TokenError("Token keys are unavailable; retry shortly.") from exc
        return keys.get(kid)


def bearer_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


SUBPROTOCOL = "chat.v1"
BEARER_SUBPROTOCOL_PREFIX = "bearer."


def bearer_from_subprotocols(offered: Sequence[str]) -> str | None:
    """The token of the ``["chat.v1", "bearer.<token>"]`` pair browsers send."""
    if SUBPROTOCOL not in offered:
        return None
    for protocol in offered:
        if protocol.startswith(BEARER_SUBPROTOCOL_PREFIX):
            return protocol[len(BEARER_SUBPROTOCOL_PREFIX) :] or None
    return None
