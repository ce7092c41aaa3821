"""Accounts: sign-up, profiles, changes and deletion."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from chat_auth.passwords import Passwords
from chat_auth.refresh import RefreshTokens, utc_now
from chat_auth.rules import (
    USERNAME_CHARS,
    check_display_name,
    check_email,
    check_password,
    normalize_username,
)
from chat_auth.throttle import Throttle, password_check_key
from chat_shared.errors import Forbidden, Invalid, NotFound, Unauthorized
from chat_shared.ids import new_id
from chat_shared.ports.auth import EmailTaken, UsernameTaken, UserRecord, UserStore
from chat_shared.revocation import RedisRevocations

log = logging.getLogger(__name__)

MAX_LOOKUP_IDS = 200


class AccountGone(Unauthorized):
    def __init__(self) -> None:
        super().__init__("This account no longer exists.")


class Accounts:
    def __init__(
        self,
        *,
        users: UserStore,
        passwords: Passwords,
        throttle: Throttle,
        refresh_tokens: RefreshTokens,
        revocations: RedisRevocations,
    ) -> None:
        self.users = users
        self.passwords = passwords
        self.throttle = throttle
        self.refresh_tokens = refresh_tokens
        self.revocations = revocations

    async def signup(
        self,
        *,
        username: str,
        email: str,
        password: str,
        display_name: str | None,
        address: str,
    ) -> UserRecord:
        await self.throttle.count_signup(address)
        name = normalize_username(username)
        email = check_email(email)
        check_password(password)
        shown = check_display_name(display_name) if display_name is not None else name
        # Cheap early answers before paying for a hash; the store's own uniqueness
        # rule still decides races.
        if await self.users.find_by_username(name) is not None:
            raise UsernameTaken
        if await self.users.find_by_email(email.lower()) is not None:
            raise EmailTaken
        user = UserRecord(
            id=new_id(),
            username=name,
            email=email,
            display_name=shown,
            password_hash=await self.passwords.hash(password),
            token_version=0,
            created_at=utc_now(),
        )
        await self.users.create_user(user)
        log.info("account created", extra={"user_id": user.id})
        return user

    async def me(self, user_id: str) -> UserRecord:
        user = await self.users.get_user(user_id)
        if user is None:
            raise AccountGone
        return user

    async def profile(self, user_id: str) -> UserRecord:
        user = await self.users.get_user(user_id)
        if user is None:
            raise NotFound("No such user.")
        return user

    async def lookup(self, user_ids: Sequence[str]) -> list[UserRecord]:
        wanted = list(dict.fromkeys(i for i in user_ids if i))
        if len(wanted) > MAX_LOOKUP_IDS:
            raise Invalid(f"At most {MAX_LOOKUP_IDS} ids per lookup.")
        return await self.users.get_users(wanted)

    async def search(self, prefix: str, limit: int, after: str | None = None) -> list[UserRecord]:
        key = prefix.strip().lower()
        if not key or not USERNAME_CHARS.match(key):
            return []  # nothing can match a character no username holds
        return await self.users.search_usernames(key, limit, after)

    async def update(
        self,
        user_id: str,
        *,
        address: str,
        display_name: str | None = None,
        email: str | None = None,
        password: str | None = None,
        current_password: str | None = None,
    ) -> UserRecord:
        user = await self.me(user_id)
        if password is not None:
            check_password(password)
            await self._confirm_password(user, current_password, address=address)
        shown = check_display_name(display_name) if display_name is not None else None
        new_email = check_email(email) if email is not None else None
        if shown is not None or new_email is not None:
            updated = await self.users.update_profile(user_id, display_name=shown, email=new_email)
            if updated is None:
                raise AccountGone
            user = updated
        if password is not None:
            version = await self.users.set_password_hash(
                user_id, await self.passwords.hash(password), bump_token_version=True
            )
            if version is None:
                raise AccountGone
            await self._revoke_sessions(user_id, version)
            log.info("password changed; sessions revoked", extra={"user_id": user_id})
            user = await self.me(user_id)
        return user

    async def delete(self, user_id: str) -> None:
        user = await self.me(user_id)
        # Revoke first: if the delete then fails the user signs in again, whereas the
        # other order could leave live tokens for an account that is gone.
        version = await self.users.set_password_hash(
            user_id, user.password_hash, bump_token_version=True
        )
        if version is None:
            raise AccountGone
        await self._revoke_sessions(user_id, version)
        await self.users.delete_user(user_id)
        log.info("account deleted", extra={"user_id": user_id})

    async def _confirm_password(
        self, user: UserRecord, current_password: str | None, *, address: str
    ) -> None:
        if current_password is None:
            raise Invalid("Changing the password needs current_password.")
        key = password_check_key(user.id)
        await self.throttle.check_password_check(key, address=address)
        if not await self.passwords.verify(user.password_hash, current_password):
            await self.throttle.record_login_failure(name_key=key, address=address)
            raise Forbidden("The current password is wrong.")
        await self.throttle.clear(key, address)

    async def _revoke_sessions(self, user_id: str, new_version: int) -> None:
        await self.revocations.revoke(user_id, new_version)
        await self.refresh_tokens.revoke_user(user_id)
