"""Signing in and staying signed in: login, refresh rotation, logout."""

from __future__ import annotations

import logging

from chat_auth.access import AccessTokens
from chat_auth.pairs import TokenPair
from chat_auth.passwords import Passwords
from chat_auth.refresh import InvalidRefreshToken, RefreshReplayed, RefreshTokens, parse_family
from chat_auth.refresh_grace import RefreshGrace
from chat_auth.rules import USERNAME_CHARS, USERNAME_MAX, looks_like_email
from chat_auth.throttle import Throttle, canonical_login, login_name_key
from chat_shared.errors import Unauthorized
from chat_shared.ports.auth import UserRecord, UserStore
from chat_shared.revocation import RedisRevocations

log = logging.getLogger(__name__)


class LoginFailed(Unauthorized):
    def __init__(self) -> None:
        # One message for an unknown login and a wrong password alike.
        super().__init__("Wrong login or password.")


class Sessions:
    def __init__(
        self,
        *,
        users: UserStore,
        passwords: Passwords,
        throttle: Throttle,
        refresh_tokens: RefreshTokens,
        access_tokens: AccessTokens,
        revocations: RedisRevocations,
        grace: RefreshGrace,
    ) -> None:
        self.users = users
        self.passwords = passwords
        self.throttle = throttle
        self.refresh_tokens = refresh_tokens
        self.access_tokens = access_tokens
        self.revocations = revocations
        self.grace = grace

    async def login(self, login: str, password: str, *, address: str) -> TokenPair:
        name_key = login_name_key(login)
        await self.throttle.check_login(name_key=name_key, address=address)
        user = await self.find(login)
        if user is None:
            await self.passwords.verify_nobody(password)
            verified = False
        else:
            verified = await self.passwords.verify(user.password_hash, password)
        if user is None or not verified:
            await self.throttle.record_login_failure(name_key=name_key, address=address)
            raise LoginFailed
        await self.throttle.clear(name_key, address)
        if self.passwords.needs_rehash(user.password_hash):
            # The parameters changed since this hash was made; the plain password is
            # only at hand now, so this is when to upgrade it.
            await self.users.set_password_hash(
                user.id, await self.passwords.hash(password), bump_token_version=False
            )
        return await self.start(user)

    async def start(self, user: UserRecord) -> TokenPair:
        """A fresh pair for ``user``: a new refresh family."""
        refresh_token = await self.refresh_tokens.issue(user.id)
        return self._pair(user, refresh_token)

    async def refresh(self, token: str) -> TokenPair:
        try:
            record = await self.refresh_tokens.consume(token)
        except RefreshReplayed as replay:
            # A second use at the same moment (two tabs, a retry) gets the first one's
            # answer; later, two parties hold the family (a thief and the user): it is
            # revoked, and its access tokens stop working too.
            earlier = await self.grace.recall(token)
            if earlier is not None:
                return earlier
            await self.refresh_tokens.revoke_family(replay.family_id)
            await self.revocations.revoke_session(replay.family_id)
            log.warning(
                "refresh token reuse; family revoked",
                extra={"user_id": replay.user_id, "family_id": replay.family_id},
            )
            raise
        user = await self.users.get_user(record.user_id)
        if user is None:
            await self.refresh_tokens.revoke_family(record.family_id)
            raise InvalidRefreshToken
        refresh_token = await self.refresh_tokens.issue(user.id, record.family_id)
        pair = self._pair(user, refresh_token)
        await self.grace.remember(token, pair)
        return pair

    async def logout(self, token: str) -> None:
        """End the sign-in session: its refresh family and, at once, its access tokens
        (every service refuses them; gateways close its sockets with 4401)."""
        family_id = await self.refresh_tokens.revoke(token)
        if family_id is not None:
            await self.revocations.revoke_session(family_id)

    async def find(self, login: str) -> UserRecord | None:
        """The account a login names: an email if it has an '@', else a username."""
        key = canonical_login(login)
        if looks_like_email(key):
            return await self.users.find_by_email(key)
        if len(key) > USERNAME_MAX or not USERNAME_CHARS.match(key):
            return None
        return await self.users.find_by_username(key)

    def _pair(self, user: UserRecord, refresh_token: str) -> TokenPair:
        family_id = parse_family(refresh_token)
        assert family_id is not None  # we made it
        return TokenPair(
            access_token=self.access_tokens.issue(user, family_id),
            refresh_token=refresh_token,
            expires_in=self.access_tokens.ttl_seconds,
        )
