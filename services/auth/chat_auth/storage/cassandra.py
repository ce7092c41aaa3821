"""The auth store on Cassandra/ScyllaDB (scylla-driver through CassandraStore).

Uniqueness without a unique index: ``users_by_username`` and ``users_by_email`` are
claimed with lightweight transactions before the account row is written, then
confirmed once it is. Invariants:

- every write to a claim, an account row or a refresh token is a lightweight
  transaction (never mixed with plain writes on those rows), and every answer's
  ``[applied]`` is checked;
- a write whose outcome is unknown (a timeout) is settled by a serial read or by
  re-running a statement whose replay is harmless, never guessed: a claim is
  released only when its account provably was not written;
- an unconfirmed claim older than ``stale_claim`` whose holder holds no account with
  that value may be taken over (a crash mid-sign-up); the takeover is conditioned on
  the claim being unconfirmed, and Paxos orders it against the holder's confirmation,
  so a slow sign-up and the taker never both keep an account.

Refresh-token rows carry TTLs, so expired tokens disappear on their own.
``last_active_at`` moves forward by compare-and-set, so concurrent writers never move
it back.
"""

from __future__ import annotations

import asyncio
import secrets
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cassandra.query import UNSET_VALUE

from chat_shared.errors import Unavailable
from chat_shared.ports.auth import (
    EmailTaken,
    RefreshTokenRecord,
    UsernameTaken,
    UserRecord,
    latest_per_user,
)
from chat_shared.store.cassandra import OUTCOME_UNKNOWN, CassandraStore

STALE_CLAIM = timedelta(seconds=60)
PREFIX_LEN = 2
# Partitions per two-letter prefix in the search index: a popular prefix ("ma", "jo")
# is spread over this many partitions (and replicas) instead of one hot one.
USERNAME_PREFIX_BUCKETS = 8
# Characters a username may hold; a one-character prefix spans one prefix each.
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


def _prefix_bucket(username: str) -> int:
    return zlib.crc32(username.encode()) % USERNAME_PREFIX_BUCKETS


@dataclass(frozen=True)
class _Claim:
    """One uniqueness claim: a row keyed by the value, holding its owner's id."""

    table: str
    column: str
    value: str
    taken: type[Exception]


def _claims_of(user: UserRecord) -> tuple[_Claim, _Claim]:
    return (
        _Claim("users_by_username", "username", user.username, UsernameTaken),
        _Claim("users_by_email", "email_key", user.email_key, EmailTaken),
    )


class CassandraAuthStore:
    def __init__(
        self,
        store: CassandraStore,
        *,
        refresh_retention_seconds: int,
        stale_claim: timedelta = STALE_CLAIM,
    ) -> None:
        self.store = store
        # TTL for writes that outlive a single token (revocation marks, 'used' flags).
        self.retention = refresh_retention_seconds
        self.stale_claim = stale_claim

    async def _lwt(self, cql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        """Run a lightweight transaction whose replay is harmless (its answer tells
        the caller what it needs either way): an unknown outcome is settled by
        running it once more."""
        try:
            return await self.store.execute(cql, params, idempotent=False)
        except OUTCOME_UNKNOWN:
            return await self.store.execute(cql, params, idempotent=False)

    async def ping(self) -> None:
        await self.store.ping()

    async def close(self) -> None:
        await asyncio.to_thread(self.store.close)

    # Accounts

    async def create_user(self, user: UserRecord) -> None:
        held: list[_Claim] = []
        try:
            for claim in _claims_of(user):
                if not await self._claim(claim, user.id):
                    raise claim.taken
                held.append(claim)
            # The search index before the account: a row without an account is
            # filtered out by every search; an account missing from search is not.
            await self._index_username(user)
            written = await self._insert_account(user)
        except BaseException:
            await self._undo_signup(user, held)
            raise
        if written is None:
            # Unknown even after reading back: keep the claims. They stay
            # unconfirmed, so if no account appears they go stale and free up.
            raise Unavailable("The account store did not answer; try again shortly.")
        if not written:
            await self._undo_signup(user, held)
            raise RuntimeError("account id already in use")
        for claim in held:
            if not await self._confirm(claim, user.id):
                # Taken over while we were slow: the taker keeps the value.
                await self._lwt("DELETE FROM users WHERE id = ? IF EXISTS", (user.id,))
                await self._undo_signup(user, [c for c in held if c != claim])
                raise claim.taken

    async def _insert_account(self, user: UserRecord) -> bool | None:
        """True if our account row is written, False if the id is someone else's,
        None if the outcome could not be learned."""
        params = (
            user.id,
            user.username,
            user.email,
            user.display_name,
            user.password_hash,
            user.token_version,
            user.created_at,
            # Unset rather than null: a null would write a tombstone per sign-up.
            UNSET_VALUE if user.last_active_at is None else user.last_active_at,
        )
        try:
            rows = await self.store.execute(_INSERT_USER, params, idempotent=False)
        except OUTCOME_UNKNOWN:
            try:
                rows = await self.store.execute(_USER_BY_ID, (user.id,), serial=True)
            except OUTCOME_UNKNOWN:
                return None
            return bool(rows) and rows[0]["username"] == user.username
        return _applied(rows) or rows[0].get("username") == user.username

    async def _undo_signup(self, user: UserRecord, held: Sequence[_Claim]) -> None:
        """Give back what a failed sign-up took (only ever called once its account
        provably is not there)."""
        for claim in held:
            await self._release(claim, user.id)
        await self.store.execute(
            "DELETE FROM username_prefixes WHERE prefix = ? AND bucket = ? AND username = ?",
            (user.username[:PREFIX_LEN], _prefix_bucket(user.username), user.username),
        )

    async def _index_username(self, user: UserRecord) -> None:
        await self.store.execute(
            "INSERT INTO username_prefixes (prefix, bucket, username, user_id) VALUES (?, ?, ?, ?)",
            (user.username[:PREFIX_LEN], _prefix_bucket(user.username), user.username, user.id),
        )

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

    async def search_usernames(
        self, prefix: str, limit: int, after: str | None = None
    ) -> list[UserRecord]:
        # Each partition is read from just after the cursor: a page costs the same
        # however deep into the results it is.
        start = max(prefix, after + "\x00") if after else prefix
        if len(prefix) >= PREFIX_LEN:
            prefixes = [prefix[:PREFIX_LEN]]
        else:
            prefixes = [prefix + char for char in USERNAME_ALPHABET]
        limiter = asyncio.Semaphore(_LOOKUP_CONCURRENCY)

        async def one(partition: str, bucket: int) -> list[dict[str, Any]]:
            async with limiter:
                return await self.store.execute(
                    "SELECT username, user_id FROM username_prefixes"
                    " WHERE prefix = ? AND bucket = ? AND username >= ? AND username < ?"
                    " LIMIT ?",
                    (partition, bucket, start, prefix + "~", limit),
                )

        pages = await asyncio.gather(
            *(one(p, b) for p in prefixes for b in range(USERNAME_PREFIX_BUCKETS))
        )
        hits = sorted((row["username"], row["user_id"]) for page in pages for row in page)
        users = await self.get_users([user_id for _, user_id in hits[:limit]])
        # An index row can outlive its account for a moment during a delete.
        return sorted(
            (user for user in users if user.username.startswith(prefix)),
            key=lambda user: user.username,
        )

    async def update_profile(
        self, user_id: str, *, display_name: str | None = None, email: str | None = None
    ) -> UserRecord | None:
        current = await self.get_user(user_id)
        if current is None:
            return None
        if email is not None and email.lower() != current.email_key:
            claim = _Claim("users_by_email", "email_key", email.lower(), EmailTaken)
            if not await self._claim(claim, user_id):
                raise EmailTaken
            if not await self._set_email(user_id, email):
                await self._release(claim, user_id)
                return None
            if not await self._confirm(claim, user_id):
                await self._set_email(user_id, current.email)
                raise EmailTaken
            old = _Claim("users_by_email", "email_key", current.email_key, EmailTaken)
            await self._release(old, user_id)
        elif email is not None and not await self._set_email(user_id, email):
            return None  # the same address in another spelling, and the account is gone
        if display_name is not None:
            rows = await self._lwt(
                "UPDATE users SET display_name = ? WHERE id = ? IF EXISTS", (display_name, user_id)
            )
            if not _applied(rows):
                return None
        return await self.get_user(user_id)

    async def set_password_hash(
        self, user_id: str, password_hash: str, *, bump_token_version: bool
    ) -> int | None:
        # Compare-and-set on the version, so concurrent bumps never lose one. Not
        # replayed blindly: a replay would bump twice. An unknown outcome is read back.
        for _ in range(_VERSION_RETRIES):
            current = await self._read_user(user_id, serial=True)
            if current is None:
                return None
            if current.password_hash == password_hash and not bump_token_version:
                return current.token_version
            version = current.token_version + (1 if bump_token_version else 0)
            try:
                rows = await self.store.execute(
                    "UPDATE users SET password_hash = ?, token_version = ? WHERE id = ?"
                    " IF token_version = ?",
                    (password_hash, version, user_id, current.token_version),
                    idempotent=False,
                )
            except OUTCOME_UNKNOWN:
                after = await self._read_user(user_id, serial=True)
                if after is not None and (after.password_hash, after.token_version) == (
                    password_hash,
                    version,
                ):
                    return version
                continue
            if _applied(rows):
                return version
        raise RuntimeError("token version kept changing; gave up")

    async def delete_user(self, user_id: str) -> UserRecord | None:
        current = await self.get_user(user_id)
        if current is None:
            return None
        rows = await self._lwt("DELETE FROM users WHERE id = ? IF EXISTS", (user_id,))
        if not _applied(rows):
            return None
        # The account row goes first: a crash after it leaves claims whose holder has
        # no account, which the stale-claim rule frees; never an account whose name
        # someone else could take.
        for claim in _claims_of(current):
            await self._release(claim, user_id)
        await self.store.execute(
            "DELETE FROM username_prefixes WHERE prefix = ? AND bucket = ? AND username = ?",
            (current.username[:PREFIX_LEN], _prefix_bucket(current.username), current.username),
        )
        # Token rows are only ever written by lightweight transactions: revoke the
        # families (their TTLs remove the rows) rather than delete them plainly.
        for family_id in await self._family_ids(user_id):
            await self.revoke_refresh_family(family_id)
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
        # IF NOT EXISTS: token rows are written only by lightweight transactions. A
        # replay finds the row there and changes nothing.
        await self._lwt(
            "INSERT INTO refresh_tokens (family_id, token_hash, user_id, issued_at, expires_at,"
            " used) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
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
        # The compare-and-set records which attempt won (used_by), so a timeout is
        # settled by reading the row back: our mark is a success, not a reuse.
        attempt = secrets.token_hex(8)
        for _ in range(2):
            try:
                rows = await self.store.execute(
                    "UPDATE refresh_tokens USING TTL ? SET used = true, used_by = ?"
                    " WHERE family_id = ? AND token_hash = ? IF used = false",
                    (self.retention, attempt, family_id, token_hash),
                    idempotent=False,
                )
            except OUTCOME_UNKNOWN:
                state = await self.store.execute(
                    "SELECT used, used_by FROM refresh_tokens"
                    " WHERE family_id = ? AND token_hash = ?",
                    (family_id, token_hash),
                    serial=True,
                )
                if not state or state[0]["used"] is None:
                    return False
                if state[0]["used"]:
                    return bool(state[0]["used_by"] == attempt)
                continue  # provably not applied: try once more
            return _applied(rows)
        return False

    async def revoke_refresh_family(self, family_id: str) -> None:
        # A lightweight transaction like every write to the family's rows; a replay
        # finds it revoked already.
        await self._lwt(
            "UPDATE refresh_tokens USING TTL ? SET family_revoked = true"
            " WHERE family_id = ? IF family_revoked != true",
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

    async def _set_email(self, user_id: str, email: str) -> bool:
        rows = await self._lwt(
            "UPDATE users SET email = ? WHERE id = ? IF EXISTS", (email, user_id)
        )
        return _applied(rows)

    async def _read_user(self, user_id: str, *, serial: bool = False) -> UserRecord | None:
        rows = await self.store.execute(_USER_BY_ID, (user_id,), serial=serial)
        return _user(rows[0]) if rows else None

    async def _claim(self, claim: _Claim, user_id: str) -> bool:
        """Take the claim (or find it ours already); False when someone else holds it."""
        for _ in range(2):
            rows = await self._lwt(
                f"INSERT INTO {claim.table} ({claim.column}, user_id, claimed_at)"  # noqa: S608
                " VALUES (?, ?, ?) IF NOT EXISTS",
                (claim.value, user_id, datetime.now(UTC)),
            )
            if _applied(rows):
                return True
            holder = rows[0] if rows else {}
            if holder.get("user_id") == user_id:
                return True
            if not await self._is_stale(claim, holder):
                return False
            # Fenced: only the very claim we judged stale, and only while unconfirmed.
            await self._lwt(
                f"DELETE FROM {claim.table} WHERE {claim.column} = ?"  # noqa: S608
                " IF user_id = ? AND claimed_at = ? AND confirmed = null",
                (claim.value, holder["user_id"], holder["claimed_at"]),
            )
        return False

    async def _is_stale(self, claim: _Claim, holder: dict[str, Any]) -> bool:
        claimed_at = holder.get("claimed_at")
        if holder.get("user_id") is None or claimed_at is None or holder.get("confirmed"):
            return False
        if datetime.now(UTC) - _utc(claimed_at) < self.stale_claim:
            return False  # a sign-up may be writing its account row right now
        # A serial read completes any account insert still in flight.
        account = await self._read_user(str(holder["user_id"]), serial=True)
        return account is None or claim.value not in (account.username, account.email_key)

    async def _confirm(self, claim: _Claim, user_id: str) -> bool:
        """Mark our claim confirmed; False if it is no longer ours (taken over)."""
        rows = await self._lwt(
            f"UPDATE {claim.table} SET confirmed = true WHERE {claim.column} = ?"  # noqa: S608
            " IF user_id = ?",
            (claim.value, user_id),
        )
        return _applied(rows)

    async def _release(self, claim: _Claim, user_id: str) -> None:
        await self._lwt(
            f"DELETE FROM {claim.table} WHERE {claim.column} = ? IF user_id = ?",  # noqa: S608
            (claim.value, user_id),
        )
