"""Holds the caller's tokens and renews them: shortly before the access token expires,
and at once when a service answers 401.

Refresh tokens rotate: each refresh answers a new pair and the old refresh token stops
working, and presenting an old one revokes the whole family. So refreshes are
single-flight (one at a time, and a caller whose stale token was already replaced just
takes the new one), and the new pair always replaces the old before anyone else reads it.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from chat_client.errors import NotAuthenticated, TransportError, Unauthorized
from chat_client.models import TokenPair

Refresher = Callable[[str], Awaitable[TokenPair]]
TokenListener = Callable[[TokenPair | None], None]

# Without an explicit margin, refresh when a fifth of the lifetime is left, but never
# earlier than 2 minutes nor later than 5 seconds before expiry.
_MARGIN_SHARE = 0.2
_MARGIN_MIN = 5.0
_MARGIN_MAX = 120.0


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, read without verifying it: only for the caller's own
    bookkeeping (its user id, its expiry), never for trusting anything."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


class TokenKeeper:
    def __init__(
        self,
        pair: TokenPair | None = None,
        *,
        refresh_margin: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pair = pair
        self._margin = refresh_margin
        self._clock = clock
        self._refresher: Refresher | None = None
        self._listeners: list[TokenListener] = []
        self._lock = asyncio.Lock()

    @property
    def pair(self) -> TokenPair | None:
        return self._pair

    @property
    def user_id(self) -> str | None:
        """The ``sub`` claim of the current access token."""
        if self._pair is None:
            return None
        sub = token_claims(self._pair.access_token).get("sub")
        return str(sub) if sub is not None else None

    def bind(self, refresher: Refresher) -> None:
        """How to trade a refresh token for a new pair (the client's HTTP call)."""
        self._refresher = refresher

    def set(self, pair: TokenPair | None) -> None:
        self._pair = pair
        for listener in list(self._listeners):
            listener(pair)

    def subscribe(self, listener: TokenListener) -> Callable[[], None]:
        """Call ``listener`` with every new pair (None after logout or a refused
        refresh). Returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def margin(self, pair: TokenPair) -> float:
        if self._margin is not None:
            return self._margin
        return min(_MARGIN_MAX, max(_MARGIN_MIN, pair.expires_in * _MARGIN_SHARE))

    def refresh_due_at(self) -> float | None:
        """Unix time at which the access token should be renewed."""
        pair = self._pair
        return None if pair is None else pair.expires_at - self.margin(pair)

    async def access_token(self) -> str:
        """A usable access token, renewed first when it is due."""
        pair = self._pair
        if pair is None:
            raise NotAuthenticated("log in first")
        due = self.refresh_due_at()
        if due is not None and self._clock() >= due:
            try:
                pair = await self.refresh(stale=pair.access_token)
            except TransportError:
                # The auth service is unreachable; the old token may still serve.
                if self._clock() >= pair.expires_at:
                    raise
        return pair.access_token

    async def refresh(self, stale: str | None = None) -> TokenPair:
        """Renew the pair. With ``stale``, a pair that already replaced that access
        token (another task refreshed meanwhile) is returned as is."""
        async with self._lock:
            pair = self._pair
            if pair is None:
                raise NotAuthenticated("log in first")
            if stale is not None and pair.access_token != stale:
                return pair
            if self._refresher is None:
                raise NotAuthenticated("no way to refresh tokens")
            try:
                fresh = await self._refresher(pair.refresh_token)
            except Unauthorized:
                # Expired, revoked, or reused: this family is dead; log in again.
                self.set(None)
                raise
            self.set(fresh)
            return fresh
