"""Stream retention: drop only what every consumer group is done with.

A stream is trimmed with ``XTRIM MINID`` at its low watermark: the oldest entry that
some group still needs, either because the group has it pending (delivered, not
acknowledged) or because the group has not read it yet. Nothing newer than that is
ever removed, however far a group lags, so no acknowledged message can disappear
before history has persisted it and the fan-out has delivered it. A bare length cap
would break that promise exactly when a consumer is slow or down.

Group positions and pending summaries are read in one MULTI, so no entry can move
from "unread" to "pending" between the two reads and slip under the watermark.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from chat_shared.keys import CONSUMER_GROUPS, shard_stream


@dataclass(frozen=True, order=True, slots=True)
class StreamId:
    ms: int
    seq: int

    @classmethod
    def parse(cls, value: bytes | str) -> StreamId:
        text = value.decode() if isinstance(value, bytes) else value
        ms, _, seq = text.partition("-")
        return cls(int(ms), int(seq or 0))

    def next(self) -> StreamId:
        return StreamId(self.ms, self.seq + 1)

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def group_watermarks(redis: Redis, stream: str) -> dict[str, StreamId]:
    """For every group on ``stream``: the oldest entry it still needs.

    Empty when the stream does not exist."""
    try:
        groups = [_text(g["name"]) for g in await redis.xinfo_groups(stream)]
    except ResponseError:  # no such stream
        return {}
    if not groups:
        return {}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xinfo_groups(stream)
        for group in groups:
            pipe.xpending(stream, group)
        replies = await pipe.execute(raise_on_error=False)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    infos, pendings = replies[0], replies[1:]
    pending_by_group = dict(zip(groups, pendings, strict=True))
    marks: dict[str, StreamId] = {}
    for info in infos:
        name = _text(info["name"])
        mark = StreamId.parse(info["last-delivered-id"]).next()
        summary = pending_by_group.get(name)
        if summary is None:
            # A group created between the two reads has read nothing yet.
            mark = StreamId(0, 1)
        elif summary["pending"] and summary["min"] is not None:
            mark = min(mark, StreamId.parse(summary["min"]))
        marks[name] = mark
    return marks


async def low_watermark(
    redis: Redis, stream: str, required_groups: Iterable[str]
) -> StreamId | None:
    """The oldest entry any group on ``stream`` still needs; ``None`` (trim nothing)
    when one of ``required_groups`` does not exist yet: it may need everything."""
    marks = await group_watermarks(redis, stream)
    if not marks or any(group not in marks for group in required_groups):
        return None
    return min(marks.values())


async def trim_stream(redis: Redis, stream: str, required_groups: Iterable[str]) -> int:
    """Remove the entries every group is done with; returns how many were removed."""
    mark = await low_watermark(redis, stream, required_groups)
    if mark is None or mark <= StreamId(0, 1):
        return 0
    return int(await redis.xtrim(stream, minid=str(mark), approximate=False))


async def trim_shard_streams(
    redis: Redis, shards: int, required_groups: Iterable[str] = CONSUMER_GROUPS
) -> int:
    """Trim every ingest shard stream at the watermark of all its groups."""
    groups = tuple(required_groups)
    removed = 0
    for shard in range(shards):
        removed += await trim_stream(redis, shard_stream(shard), groups)
    return removed
