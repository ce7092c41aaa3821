"""The auth service's storage port: accounts and refresh-token families.

Both adapters (SQLite and Cassandra) implement :class:`AuthStore` with the same
semantics, which the contract test suite checks engine by engine:

- usernames and emails are unique; callers pass them already normalised
  (``username`` lower-cased, ``email_key`` the lower-cased email);
- a refresh token is looked up by ``(family_id, token_hash)``; marking it used is
  atomic, so of two concurrent rotations exactly one wins;
- revoking a family makes every token of it unusable;
- ``last_active_at`` only ever moves forward: recording an older time is a no-op.

Timestamps are timezone-aware UTC datetimes with millisecond precision (what both
engines store).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from chat_shared.errors import Conflict


class UsernameTaken(Conflict):
    title = "Username taken"

    def __init__(self) -> None:
        super().__init__("This username is already taken.")


class EmailTaken(Conflict):
    title = "Email taken"

    def __init__(self) -> None:
        super().__init__("This email address is already registered.")


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    username: str
    email: str
    display_name: str
    password_hash: str
    token_version: int
    created_at: datetime
    # When the user was last seen online; None until the first offline is recorded.
    last_active_at: datetime | None = None

    @property
    def email_key(self) -> str:
        return self.email.lower()


@dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    family_id: str
    token_hash: str
    user_id: str
    issued_at: datetime
    expires_at: datetime
    used: bool
    family_revoked: bool


def latest_per_user(entries: Sequence[tuple[str, datetime]]) -> dict[str, datetime]:
    """The latest time of each user among ``entries`` (what record_last_active keeps)."""
    latest: dict[str, datetime] = {}
    for user_id, moment in entries:
        if user_id not in latest or moment > latest[user_id]:
            latest[user_id] = moment
    return latest


class UserStore(Protocol):
    async def create_user(self, user: UserRecord) -> None:
        """Insert a new account; raises :class:`UsernameTaken` or :class:`EmailTaken`
        (username is checked first when both are taken)."""
        ...

    async def get_user(self, user_id: str) -> UserRecord | None: ...

    async def get_users(self, user_ids: Sequence[str]) -> list[UserRecord]:
        """The accounts among ``user_ids`` that exist, in the order asked."""
        ...

    async def find_by_username(self, username: str) -> UserRecord | None:
        """``username`` is already lower-cased."""
        ...

    async def find_by_email(self, email_key: str) -> UserRecord | None:
        """``email_key`` is the lower-cased email."""
        ...

    async def search_usernames(
        self, prefix: str, limit: int, after: str | None = None
    ) -> list[UserRecord]:
        """Accounts whose username starts with ``prefix`` (lower-cased, non-empty),
        in username order, at most ``limit``; with ``after``, only usernames after it
        (the last one of the previous page)."""
        ...

    async def update_profile(
        self, user_id: str, *, display_name: str | None = None, email: str | None = None
    ) -> UserRecord | None:
        """Change the given fields; ``None`` keeps a field. Raises :class:`EmailTaken`.
        Returns the updated account, or ``None`` when it does not exist."""
        ...

    async def set_password_hash(
        self, user_id: str, password_hash: str, *, bump_token_version: bool
    ) -> int | None:
        """Store a new hash; with ``bump_token_version`` also add one to the token
        version, atomically. Returns the (new) token version, ``None`` if no account."""
        ...

    async def delete_user(self, user_id: str) -> UserRecord | None:
        """Remove the account and free its username and email. Returns what was
        removed, ``None`` if there was nothing."""
        ...

    async def record_last_active(self, entries: Sequence[tuple[str, datetime]]) -> None:
        """Move each user's ``last_active_at`` forward to the given time, never back.
        A user may appear more than once (the latest time counts); ids of accounts
        that do not exist are ignored, and no account is created for them."""
        ...


class RefreshTokenStore(Protocol):
    async def add_refresh_token(self, token: RefreshTokenRecord) -> None:
        """Store a token; its family is created on first use of ``family_id``."""
        ...

    async def get_refresh_token(
        self, family_id: str, token_hash: str
    ) -> RefreshTokenRecord | None: ...

    async def mark_refresh_token_used(self, family_id: str, token_hash: str) -> bool:
        """Atomically mark an unused token used. ``False`` if it was already used or
        does not exist: the caller lost a race or sees a replay."""
        ...

    async def revoke_refresh_family(self, family_id: str) -> None: ...

    async def revoke_user_refresh_families(self, user_id: str) -> int:
        """Revoke every family of a user; returns how many were revoked."""
        ...

    async def purge_expired_refresh_tokens(self, now: datetime) -> int:
        """Drop tokens past their expiry (engines with TTLs may do nothing)."""
        ...


class AuthStore(UserStore, RefreshTokenStore, Protocol):
    """Everything the auth service stores, behind one engine."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
