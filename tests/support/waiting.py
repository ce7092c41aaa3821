"""Waiting on events in tests: a condition that comes true, a task that runs for a block."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 15
) -> None:
    """Poll ``check`` (plain or async) until it holds; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if await value if isinstance(value, Awaitable) else value:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(work: Awaitable[None]) -> AsyncIterator[None]:
    """Run ``work`` as a task for the block; cancel it and wait for it after."""
    task = asyncio.ensure_future(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
