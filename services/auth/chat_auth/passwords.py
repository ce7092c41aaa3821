"""argon2id password hashing off the event loop, with a cap on concurrent hashes.

Each hash holds ``memory_kib`` of memory for its duration, so an unbounded login
burst could exhaust the machine: a semaphore lets ``max_concurrent`` hashes run and
makes the rest wait (up to ``wait_seconds``, then 503).
"""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from chat_auth.settings import AuthSettings
from chat_shared.errors import Unavailable


class Passwords:
    def __init__(
        self,
        *,
        time_cost: int,
        memory_kib: int,
        parallelism: int,
        max_concurrent: int,
        wait_seconds: float,
    ) -> None:
        self.hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        self._slots = asyncio.Semaphore(max_concurrent)
        self._wait_seconds = wait_seconds
        self._dummy_hash: str | None = None

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Passwords:
        return cls(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            max_concurrent=settings.max_concurrent_hashes,
            wait_seconds=settings.hash_wait_seconds,
        )

    async def hash(self, password: str) -> str:
        async with self._slot():
            return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        async with self._slot():
            return await asyncio.to_thread(self._verify_blocking, password_hash, password)

    async def prepare(self) -> None:
        """Compute the stand-in hash once at start-up (see :meth:`verify_nobody`)."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))

    async def verify_nobody(self, password: str) -> None:
        """Spend the time a real verification takes, for a login that matched no
        account, so timing does not tell which accounts exist."""
        await self.prepare()
        assert self._dummy_hash is not None
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def _verify_blocking(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _slot(self) -> _Slot:
        return _Slot(self._slots, self._wait_seconds)


class _Slot:
    def __init__(self, semaphore: asyncio.Semaphore, wait_seconds: float) -> None:
        self._semaphore = semaphore
        self._wait_seconds = wait_seconds

    async def __aenter__(self) -> None:
        try:
            async with asyncio.timeout(self._wait_seconds):
                await self._semaphore.acquire()
        except TimeoutError as exc:
            raise Unavailable("Too many sign-ins at once; retry shortly.") from exc

    async def __aexit__(self, *_: object) -> None:
        self._semaphore.release()
