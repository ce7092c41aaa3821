"""Server-side Lua scripts, on one server, a cluster, or a primary just promoted.

A script is called by its SHA1 (``EVALSHA``). A server that does not hold it (a fresh
node, a restart without the script cache, a replica promoted by a failover) answers
``NOSCRIPT`` without running anything, so the call is sent again with the full source
(``EVAL``, which also caches it there): that is its one and only run. There is no load
step to forget and nothing to redo after a failover.

Many calls go in one pipelined round trip with :func:`run_batch`. redis-py refuses its
own ``Script`` objects in cluster pipelines, so the calls are sent as plain commands;
a cluster client routes each to the primary of its keys' slot. Every key a script
touches is passed in ``KEYS`` and shares one hash tag, so each call stays in one slot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError


class LuaScript:
    def __init__(self, redis: Redis, source: str) -> None:
        self.redis = redis
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[str] = (), args: Sequence[Any] = ()) -> Any:
        try:
            return await self.redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.redis.eval(self.source, len(keys), *keys, *args)


ScriptCall = tuple[LuaScript, Sequence[str], Sequence[Any]]


class NotReplicated(RuntimeError):
    """The writes reached the primary but not the replicas asked for in time."""


@dataclass(frozen=True)
class Replication:
    """Wait for ``replicas`` replicas to confirm a batch's writes (``WAIT``), at most
    ``timeout_ms``, before its replies count. Sent on the batch's own connection, after
    its calls: WAIT answers for the writes of the connection it is sent on. One primary
    only (a single server or Sentinel's): a cluster spreads a batch over primaries."""

    replicas: int
    timeout_ms: int


async def run_batch(
    redis: Redis,
    calls: Sequence[ScriptCall],
    *,
    raise_on_error: bool = True,
    replication: Replication | None = None,
) -> list[Any]:
    """Run the calls in one round trip (two when some server lacked a script) and
    return their replies in order. A failed call raises once every call has run; with
    ``raise_on_error=False`` its exception takes its place among the replies. With
    ``replication``, :class:`NotReplicated` is raised when too few replicas confirm."""
    if not calls:
        return []
    waiting = replication is not None and replication.replicas > 0
    async with redis.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        if waiting:
            assert replication is not None
            pipe.execute_command("WAIT", replication.replicas, replication.timeout_ms)
        results: list[Any] = await pipe.execute(raise_on_error=False)
    confirmed = results.pop() if waiting else None
    missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if missing:
        async with redis.pipeline(transaction=False) as pipe:
            for i in missing:
                script, keys, args = calls[i]
                pipe.execute_command("EVAL", script.source, len(keys), *keys, *args)
            if waiting:
                assert replication is not None
                pipe.execute_command("WAIT", replication.replicas, replication.timeout_ms)
            again = await pipe.execute(raise_on_error=False)
            confirmed = again.pop() if waiting else None
            for i, result in zip(missing, again, strict=True):
                results[i] = result
    if waiting:
        assert replication is not None
        if isinstance(confirmed, Exception):
            raise confirmed
        if int(confirmed or 0) < replication.replicas:
            raise NotReplicated(f"{confirmed} of {replication.replicas} replicas confirmed")
    if raise_on_error:
        for result in results:
            if isinstance(result, Exception):
                raise result
    return results
