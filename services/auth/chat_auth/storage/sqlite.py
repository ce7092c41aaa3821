"""The auth store on SQLite (embedded default).

Uniqueness comes from unique indexes; every write runs in one transaction on the
single writer thread, so check-then-insert sequences cannot interleave.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chat_shared.ports.auth import (
    EmailTaken,
    RefreshTokenRecord,
    UsernameTaken,
    UserRecord,
    latest_per_user,
)
from chat_shared.store.sqlite import SqliteDatabase

_SELECT_USERS = (
    "SELECT id, username, email, display_name, password_hash, token_version, created_at,"
    " last_active_at FROM users"
)
_USER_BY_ID = _SELECT_USERS + " WHERE id = ?"
# SQLite caps bound parameters per statement; look ids up in chunks below it.
_IN_CHUNK = 500
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


# Integer arithmetic: through a float timestamp some times (e.g. early 2004) lose a ms.
def to_ms(moment: datetime) -> int:
    return (moment - EPOCH) // ONE_MS


def from_ms(ms: int) -> datetime:
    return EPOCH + ms * ONE_MS


def _user(row: sqlite3.Row) -> UserRecord:
    return UserRecord(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        display_name=row["display_name"],
        password_hash=row["password_hash"],
        token_version=int(row["token_version"]),
        created_at=from_ms(int(row["created_at"])),
        last_active_at=_optional_ms(row["last_active_at"]),
    )


def _optional_ms(value: int | None) -> datetime | None:
    return None if value is None else from_ms(int(value))


class SqliteAuthStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    @classmethod
    def open(cls, path: Path) -> SqliteAuthStore:
        return cls(SqliteDatabase(path))

    async def ping(self) -> None:
        await self.db.ping()

    async def close(self) -> None:
        self.db.close()

    # Accounts

    async def create_user(self, user: UserRecord) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            taken = "SELECT 1 FROM users WHERE {} = ?"
            if conn.execute(taken.format("username"), (user.username,)).fetchone():
                raise UsernameTaken
            if conn.execute(taken.format("email_key"), (user.email_key,)).fetchone():
                raise EmailTaken
            conn.execute(
                "INSERT INTO users (id, username, email, email_key, display_name,"
                " password_hash, token_version, created_at, last_active_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    user.id,
                    user.username,
                    user.email,
                    user.email_key,
                    user.display_name,
                    user.password_hash,
                    user.token_version,
                    to_ms(user.created_at),
                    None if user.last_active_at is None else to_ms(user.last_active_at),
                ),
            )

        await self.db.write(insert)

    async def get_user(self, user_id: str) -> UserRecord | None:
        return await self._one(_USER_BY_ID, user_id)

    async def get_users(self, user_ids: Sequence[str]) -> list[UserRecord]:
        wanted = list(dict.fromkeys(user_ids))

        def select(conn: sqlite3.Connection) -> dict[str, UserRecord]:
            found: dict[str, UserRecord] = {}
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                query = f"{_SELECT_USERS} WHERE id IN ({marks})"
                for row in conn.execute(query, chunk):
                    found[row["id"]] = _user(row)
            return found

        found = await self.db.read(select)
        return [found[user_id] for user_id in wanted if user_id in found]

    async def find_by_username(self, username: str) -> UserRecord | None:
        return await self._one(_SELECT_USERS + " WHERE username = ?", username)

    async def find_by_email(self, email_key: str) -> UserRecord | None:
        return await self._one(_SELECT_USERS + " WHERE email_key = ?", email_key)

    async def search_usernames(
        self, prefix: str, limit: int, after: str | None = None
    ) -> list[UserRecord]:
        # A range on the unique index: usernames only hold characters below '~'.
        def select(conn: sqlite3.Connection) -> list[UserRecord]:
            rows = conn.execute(
                _SELECT_USERS + " WHERE username >= ? AND username > ? AND username < ?"
                " ORDER BY username LIMIT ?",
                (prefix, after or "", prefix + "~", limit),
            )
            return [_user(row) for row in rows]

        return await self.db.read(select)

    async def update_profile(
        self, user_id: str, *, display_name: str | None = None, email: str | None = None
    ) -> UserRecord | None:
        def update(conn: sqlite3.Connection) -> UserRecord | None:
            if email is not None:
                clash = conn.execute(
                    "SELECT 1 FROM users WHERE email_key = ? AND id != ?",
                    (email.lower(), user_id),
                ).fetchone()
                if clash:
                    raise EmailTaken
                conn.execute(
                    "UPDATE users SET email = ?, email_key = ? WHERE id = ?",
                    (email, email.lower(), user_id),
                )
            if display_name is not None:
                conn.execute(
                    "UPDATE users SET display_name = ? WHERE id = ?", (display_name, user_id)
                )
            row = conn.execute(_USER_BY_ID, (user_id,)).fetchone()
            return _user(row) if row else None

        return await self.db.write(update)

    async def set_password_hash(
        self, user_id: str, password_hash: str, *, bump_token_version: bool
    ) -> int | None:
        def update(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "UPDATE users SET password_hash = ?, token_version = token_version + ?"
                " WHERE id = ? RETURNING token_version",
                (password_hash, 1 if bump_token_version else 0, user_id),
            ).fetchone()
            return int(row[0]) if row else None

        return await self.db.write(update)

    async def delete_user(self, user_id: str) -> UserRecord | None:
        def delete(conn: sqlite3.Connection) -> UserRecord | None:
            row = conn.execute(_USER_BY_ID, (user_id,)).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM refresh_families WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
            return _user(row)

        return await self.db.write(delete)

    async def record_last_active(self, entries: Sequence[tuple[str, datetime]]) -> None:
        rows = [
            (to_ms(moment), user_id, to_ms(moment))
            for user_id, moment in latest_per_user(entries).items()
        ]
        if not rows:
            return
        # The condition keeps the time moving forward; an unknown id matches no row.
        await self.db.write(
            lambda conn: conn.executemany(
                "UPDATE users SET last_active_at = ?"
                " WHERE id = ? AND (last_active_at IS NULL OR last_active_at < ?)",
                rows,
            )
        )

    # Refresh tokens

    async def add_refresh_token(self, token: RefreshTokenRecord) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO refresh_families (family_id, user_id, created_at)"
                " VALUES (?, ?, ?)",
                (token.family_id, token.user_id, to_ms(token.issued_at)),
            )
            conn.execute(
                "INSERT INTO refresh_tokens (family_id, token_hash, issued_at, expires_at, used)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    token.family_id,
                    token.token_hash,
                    to_ms(token.issued_at),
                    to_ms(token.expires_at),
                    int(token.used),
                ),
            )

        await self.db.write(insert)

    async def get_refresh_token(self, family_id: str, token_hash: str) -> RefreshTokenRecord | None:
        def select(conn: sqlite3.Connection) -> RefreshTokenRecord | None:
            row = conn.execute(
                "SELECT t.family_id, t.token_hash, f.user_id, t.issued_at, t.expires_at,"
                " t.used, f.revoked FROM refresh_tokens t"
                " JOIN refresh_families f ON f.family_id = t.family_id"
                " WHERE t.family_id = ? AND t.token_hash = ?",
                (family_id, token_hash),
            ).fetchone()
            if row is None:
                return None
            return RefreshTokenRecord(
                family_id=row["family_id"],
                token_hash=row["token_hash"],
                user_id=row["user_id"],
                issued_at=from_ms(int(row["issued_at"])),
                expires_at=from_ms(int(row["expires_at"])),
                used=bool(row["used"]),
                family_revoked=bool(row["revoked"]),
            )

        return await self.db.read(select)

    async def mark_refresh_token_used(self, family_id: str, token_hash: str) -> bool:
        def update(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE refresh_tokens SET used = 1"
                " WHERE family_id = ? AND token_hash = ? AND used = 0",
                (family_id, token_hash),
            )
            return cursor.rowcount == 1

        return await self.db.write(update)

    async def revoke_refresh_family(self, family_id: str) -> None:
        await self.db.write(
            lambda conn: conn.execute(
                "UPDATE refresh_families SET revoked = 1 WHERE family_id = ?", (family_id,)
            )
        )

    async def revoke_user_refresh_families(self, user_id: str) -> int:
        def update(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE refresh_families SET revoked = 1 WHERE user_id = ? AND revoked = 0",
                (user_id,),
            )
            return cursor.rowcount

        return await self.db.write(update)

    async def purge_expired_refresh_tokens(self, now: datetime) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            removed = conn.execute(
                "DELETE FROM refresh_tokens WHERE expires_at < ?", (to_ms(now),)
            ).rowcount
            conn.execute(
                "DELETE FROM refresh_families WHERE NOT EXISTS"
                " (SELECT 1 FROM refresh_tokens t WHERE t.family_id = refresh_families.family_id)"
            )
            return removed

        return await self.db.write(delete)

    async def _one(self, query: str, value: str) -> UserRecord | None:
        def select(conn: sqlite3.Connection) -> UserRecord | None:
            row = conn.execute(query, (value,)).fetchone()
            return _user(row) if row else None

        return await self.db.read(select)
