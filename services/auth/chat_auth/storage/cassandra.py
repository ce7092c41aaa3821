"""The auth store on Cassandra/ScyllaDB (scylla-driver through CassandraStore).

Uniqueness without a unique index: ``users_by_username`` and ``users_by_email`` are
claimed with lightweight transactions before the account row is written, and
released (only by their owner: ``IF user_id = ?``) when a later step fails or the
account goes away. A claim whose account row never appeared (a crash mid-signup) is
reclaimed after ``STALE_CLAIM``. Refresh-token rows carry TTLs, so expired tokens
disappear on their own. ``last_active_at`` moves forward by compare-and-set, so
concurrent writers never move it back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cassandra.query import UNSET_VALUE

from chat_shared.ports.auth import (
    EmailTaken,
    RefreshTokenRecord,
    UsernameTaken,
    UserRecord,
    latest_per_user,
)
from chat_shared.store.cassandra import CassandraStore

STALE_CLAIM = timedelta(seconds=60)
PREFIX_LEN = 2
# Characters a username may hold; a one-character prefix spans one partition each.
USERNAME_ALPHABET = "-._0123456789abcdefghijklmnopqrstuvwxyz"
_LOOKUP_CONCURRENCY = 32
_VERSION_RETRIES = 8

_INSERT_USER = (
    "INSERT INTO users (id, username, email, display_name, password_hash, token_version,"
    " created_at, last_active_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
)
_USER_BY_ID = (
    "SELECT id, username, email, display_name, password_hash, token_version, created_at,"
    " last_active_at FROM users WHERE id = ?"
)
# created_at is set on every account row, so conditioning on it keeps these updates
# from creating a row for an account that was deleted meanwhile.
_SET_FIRST_LAST_ACTIVE = (
    "UPDATE users SET last_active_at = ? WHERE id = ? IF created_at = ? AND last_active_at = null"
)
_MOVE_LAST_ACTIVE = (
    "UPDATE users SET last_active_at = ? WHERE id = ? IF created_at = ? AND last_active_at = ?"
)


def _utc(value: datetime) -> datetime:
    # The driver hands back naive datetimes that are UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _user(row: dict[str, Any]) -> UserRecord:
    return UserRecord(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        display_name=row["display_name"],
        password_hash=row["password_hash"],
        token_version=int(row["token_version"] or 0),
        created_at=_utc(row["created_at"]),
        last_active_at=None if row.get("last_active_at") is None else _utc(row["last_active_at"]),
    )


def _applied(rows: list[dict[str, Any]]) -> bool:
    return bool(rows and rows[0].get("[applied]"))


class CassandraAuthStore:
    def __init__(self, store: CassandraStore, *, refresh_retention_seconds: int) -> None:
        self.store = store
        # TTL for writes that outlive a single token (revocation marks, 'used' flags).
        self.retention = refresh_retention_seconds

    async def ping(self) -> None:
        await self.store.ping()

    async def close(self) -> None:
        await asyncio.to_thread(self.store.close)

    # Accounts

    async def create_user(self, user: UserRecord) -> None:
        if not await self._claim("users_by_username", "username", user.username, user.id):
            raise UsernameTaken
        if not await self._claim("users_by_email", "email_key", user.email_key, user.id):
            await self._release("users_by_username", "username", user.username, user.id)
            raise EmailTaken
        try:
            await self.store.execute(
                _INSERT_USER,
                (
                    user.id,
                    user.username,
                    user.email,
                    user.display_name,
                    user.password_hash,
                    user.token_version,
                    user.created_at,
                    # Unset rather than null: a null would write a tombstone per sign-up.
                    UNSET_VALUE if user.last_active_at is None else user.last_active_at,
                ),
            )
            await self.store.execute(
                "INSERT INTO usernames_by_prefix (prefix, username, user_id) VALUES (?, ?, ?)",
                (user.username[:PREFIX_LEN], user.username, user.id),
            )
        except BaseException:
            await self._release("users_by_username", "username", user.username, user.id)
            await self._release("users_by_email", "email_key", user.email_key, user.id)
            raise

    async def get_user(self, user_id: str) -> UserRecord | None:
        rows = await self.store.execute(_USER_BY_ID, (user_id,))
        return _user(rows[0]) if rows else None

    async def get_users(self, user_ids: Sequence[str]) -> list[UserRecord]:
        # Single-partition reads in parallel beat one IN over many partitions.
        wanted = list(dict.fromkeys(user_ids))
        limit = asyncio.Semaphore(_LOOKUP_CONCURRENCY)

        async def one(user_id: str) -> UserRecord | None:
            async with limit:
                return await self.get_user(user_id)

        found = await asyncio.gather(*(one(user_id) for user_id in wanted))
        return [user for user in found if user is not None]

    async def find_by_username(self, username: str) -> UserRecord | None:
        return await self._by_lookup("users_by_username", "username", username)

    async def find_by_email(self, email_key: str) -> UserRecord | None:
        return await self._by_lookup("users_by_email", "email_key", email_key)

    async def search_usernames(self, prefix: str, limit: int) -> list[UserRecord]:
        if len(prefix) >= PREFIX_LEN:
            partitions = [prefix[:PREFIX_LEN]]
        else:
            partitions = [prefix + char for char in USERNAME_ALPHABET]
        pages = await asyncio.gather(
            *(
                self.store.execute(
                    "SELECT username, user_id FROM usernames_by_prefix"
                    " WHERE prefix = ? AND username >= ? AND username < ? LIMIT ?",
                    (partition, prefix, prefix + "~", limit),
                )
                for partition in partitions
            )
        )
        hits = sorted((row["username"], row["user_id"]) for page in pages for row in page)
        users = await self.get_users([user_id for _, user_id in hits[:limit]])
        # A prefix row can outlive its account for a moment during a delete.
        return [user for user in users if user.username.startswith(prefix)]

    async def update_profile(
        self, user_id: str, *, display_name: str | None = None, email: str | None = None
    ) -> UserRecord | None:
        current = await self.get_user(user_id)
        if current is None:
            return None
        if email is not None:
            new_key = email.lower()
            if new_key != current.email_key and not await self._claim(
                "users_by_email", "email_key", new_key, user_id
            ):
                raise EmailTaken
            rows = await self.store.execute(
                "UPDATE users SET email = ? WHERE id = ? IF EXISTS", (email, user_id)
            )
            if not _applied(rows):
                await self._release("users_by_email", "email_key", new_key, user_id)
                return None
            if new_key != current.email_key:
                await self._release("users_by_email", "email_key", current.email_key, user_id)
        if display_name is not None:
            rows = await self.store.execute(
                "UPDATE users SET display_name = ? WHERE id = ? IF EXISTS", (display_name, user_id)
            )
            if not _applied(rows):
                return None
        return await self.get_user(user_id)

    async def set_password_hash(
        self, user_id: str, password_hash: str, *, bump_token_version: bool
    ) -> int | None:
        # Compare-and-set on the version, so concurrent bumps never lose one.
        for _ in range(_VERSION_RETRIES):
            current = await self.get_user(user_id)
            if current is None:
                return None
            version = current.token_version + (1 if bump_token_version else 0)
            rows = await self.store.execute(
                "UPDATE users SET password_hash = ?, token_version = ? WHERE id = ?"
                " IF token_version = ?",
                (password_hash, version, user_id, current.token_version),
            )
            if _applied(rows):
                return version
        raise RuntimeError("token version kept changing; gave up")

    async def delete_user(self, user_id: str) -> UserRecord | None:
        current = await self.get_user(user_id)
        if current is None:
            return None
        rows = await self.store.execute("DELETE FROM users WHERE id = ? IF EXISTS", (user_id,))
        if not _applied(rows):
            return None
        # The account row goes first: a crash after it leaves claims that the stale-
        # claim rule frees, never an account whose name someone else could take.
        await self._release("users_by_username", "username", current.username, user_id)
        await self._release("users_by_email", "email_key", current.email_key, user_id)
        await self.store.execute(
            "DELETE FROM usernames_by_prefix WHERE prefix = ? AND username = ?",
            (current.username[:PREFIX_LEN], current.username),
        )
        for family_id in await self._family_ids(user_id):
            await self.store.execute("DELETE FROM refresh_tokens WHERE family_id = ?", (family_id,))
        await self.store.execute(
            "DELETE FROM refresh_families_by_user WHERE user_id = ?", (user_id,)
        )
        return current

    async def record_last_active(self, entries: Sequence[tuple[str, datetime]]) -> None:
        limit = asyncio.Semaphore(_LOOKUP_CONCURRENCY)

        async def one(user_id: str, moment: datetime) -> None:
            async with limit:
                await self._move_last_active(user_id, moment)

        await asyncio.gather(
            *(one(user_id, moment) for user_id, moment in latest_per_user(entries).items())
        )

    async def _move_last_active(self, user_id: str, moment: datetime) -> None:
        # Compare-and-set against the value seen, so two writers never move it back.
        seen = await self._last_active_state(user_id)
        for _ in range(_VERSION_RETRIES):
            if seen.get("created_at") is None:
                return  # no such account, or it was deleted meanwhile
            current = seen.get("last_active_at")
            if current is not None and _utc(current) >= moment:
                return
            if current is None:
                rows = await self.store.execute(
                    _SET_FIRST_LAST_ACTIVE, (moment, user_id, seen["created_at"])
                )
            else:
                rows = await self.store.execute(
                    _MOVE_LAST_ACTIVE, (moment, user_id, seen["created_at"], current)
                )
            if _applied(rows):
                return
            # A refused LWT answers with the current values of the columns it checked
            # (nothing of them when the row is gone); read again if they are missing.
            answer = rows[0] if rows else {}
            seen = answer if "created_at" in answer else await self._last_active_state(user_id)
        raise RuntimeError("last_active_at kept changing; gave up")

    async def _last_active_state(self, user_id: str) -> dict[str, Any]:
        rows = await self.store.execute(
            "SELECT created_at, last_active_at FROM users WHERE id = ?", (user_id,)
        )
        return rows[0] if rows else {}

    # Refresh tokens

    async def add_refresh_token(self, token: RefreshTokenRecord) -> None:
        ttl = max(1, int((token.expires_at - datetime.now(UTC)).total_seconds()) + 1)
        await self.store.execute(
            "INSERT INTO refresh_tokens (family_id, token_hash, user_id, issued_at, expires_at,"
            " used) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?",
            (
                token.family_id,
                token.token_hash,
                token.user_id,
                token.issued_at,
                token.expires_at,
                token.used,
                ttl,
            ),
        )
        await self.store.execute(
            "INSERT INTO refresh_families_by_user (user_id, family_id) VALUES (?, ?) USING TTL ?",
            (token.user_id, token.family_id, max(ttl, self.retention)),
        )

    async def get_refresh_token(self, family_id: str, token_hash: str) -> RefreshTokenRecord | None:
        rows = await self.store.execute(
            "SELECT family_id, token_hash, user_id, family_revoked, issued_at, expires_at, used"
            " FROM refresh_tokens WHERE family_id = ? AND token_hash = ?",
            (family_id, token_hash),
        )
        if not rows or rows[0].get("issued_at") is None:
            return None
        row = rows[0]
        return RefreshTokenRecord(
            family_id=row["family_id"],
            token_hash=row["token_hash"],
            user_id=row["user_id"],
            issued_at=_utc(row["issued_at"]),
            expires_at=_utc(row["expires_at"]),
            used=bool(row["used"]),
            family_revoked=bool(row["family_revoked"]),
        )

    async def mark_refresh_token_used(self, family_id: str, token_hash: str) -> bool:
        rows = await self.store.execute(
            "UPDATE refresh_tokens USING TTL ? SET used = true"
            " WHERE family_id = ? AND token_hash = ? IF used = false",
            (self.retention, family_id, token_hash),
        )
        return _applied(rows)

    async def revoke_refresh_family(self, family_id: str) -> None:
        await self.store.execute(
            "UPDATE refresh_tokens USING TTL ? SET family_revoked = true WHERE family_id = ?",
            (self.retention, family_id),
        )

    async def revoke_user_refresh_families(self, user_id: str) -> int:
        family_ids = await self._family_ids(user_id)
        for family_id in family_ids:
            await self.revoke_refresh_family(family_id)
        return len(family_ids)

    async def purge_expired_refresh_tokens(self, now: datetime) -> int:
        return 0  # TTLs expire the rows

    # Helpers

    async def _family_ids(self, user_id: str) -> list[str]:
        rows = await self.store.execute(
            "SELECT family_id FROM refresh_families_by_user WHERE user_id = ?", (user_id,)
        )
        return [row["family_id"] for row in rows]

    async def _by_lookup(self, table: str, column: str, value: str) -> UserRecord | None:
        query = f"SELECT user_id FROM {table} WHERE {column} = ?"  # noqa: S608 - our names
        rows = await self.store.execute(query, (value,))
        if not rows:
            return None
        user = await self.get_user(rows[0]["user_id"])
        # A claim whose account is gone (or not written yet) finds nobody.
        if user is None or (user.username != value and user.email_key != value):
            return None
        return user

    async def _claim(self, table: str, column: str, value: str, user_id: str) -> bool:
        for _ in range(2):
            rows = await self.store.execute(
                f"INSERT INTO {table} ({column}, user_id, claimed_at) VALUES (?, ?, ?)"  # noqa: S608
                " IF NOT EXISTS",
                (value, user_id, datetime.now(UTC)),
            )
            if _applied(rows):
                return True
            holder = rows[0] if rows else {}
            if holder.get("user_id") == user_id:
                return True
            if not await self._is_stale(holder):
                return False
            await self._release(table, column, value, str(holder["user_id"]))
        return False

    async def _is_stale(self, holder: dict[str, Any]) -> bool:
        claimed_at = holder.get("claimed_at")
        if holder.get("user_id") is None or claimed_at is None:
            return False
        if datetime.now(UTC) - _utc(claimed_at) < STALE_CLAIM:
            return False  # a sign-up may be writing its account row right now
        return await self.get_user(str(holder["user_id"])) is None

    async def _release(self, table: str, column: str, value: str, user_id: str) -> None:
        await self.store.execute(
            f"DELETE FROM {table} WHERE {column} = ? IF user_id = ?",  # noqa: S608
            (value, user_id),
        )
