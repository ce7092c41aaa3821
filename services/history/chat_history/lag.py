"""How far a consumer group is behind: pending entries plus entries not yet read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError


@dataclass(frozen=True, slots=True)
class GroupLag:
    pending: int
    unread: int

    @property
    def total(self) -> int:
        return self.pending + self.unread


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def group_lag(
    redis: Redis, streams: Sequence[str], group: str, *, count_cap: int = 100_000
) -> GroupLag:
    """Sum over ``streams``. Redis reports the unread count itself; when it cannot
    (after deletions) the entries past the group's position are counted, up to
    ``count_cap`` per stream."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xinfo_groups(stream)
        replies = await pipe.execute(raise_on_error=False)
    pending = unread = 0
    for stream, reply in zip(streams, replies, strict=True):
        if isinstance(reply, ResponseError):  # the stream does not exist yet
            continue
        for info in reply:
            if _text(info["name"]) != group:
                continue
            pending += int(info["pending"])
            lag = info.get("lag")
            if lag is None:
                after = "(" + _text(info["last-delivered-id"])
                lag = len(await redis.xrange(stream, min=after, max="+", count=count_cap))
            unread += int(lag)
    return GroupLag(pending=pending, unread=unread)
