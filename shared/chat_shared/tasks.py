"""Helpers for the background loops every service runs."""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """Honour a cancellation that was swallowed on the way.

    On Python 3.11, ``asyncio.wait_for`` (redis-py wraps socket I/O in it) can swallow
    a cancellation that lands just as the wrapped call completes; the task still counts
    the request. A loop that checks this once per round stops promptly on shutdown
    instead of running (or blocking on its next read) forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
