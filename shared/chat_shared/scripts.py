"""Server-side Lua scripts, on one server, a cluster, or a primary just promoted.

A script is called by its SHA1 (``EVALSHA``). A server that does not hold it (a fresh
node, a restart without the script cache, a replica promoted by a failover) answers
``NOSCRIPT`` without running anything, so the call is sent again with the full source
(``EVAL``, which also caches it there): that is its one and only run. There is no load
step to forget and nothing to redo after a failover.

Many calls go in one pipelined round trip with :func:`run_batch`, or, for callers that
each await one call, with :class:`TurnBatch`. redis-py refuses its
own ``Script`` objects in cluster pipelines, so the calls are sent as plain commands;
a cluster client routes each to the primary of its keys' slot. Every key a script
touches is passed in ``KEYS`` and shares one hash tag, so each call stays in one slot.
"""

from __future__ import annotations

import asyncio
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


class TurnBatch:
    """Script calls made in the same event-loop turn, sent as one :func:`run_batch`.

    The Python client, not the server, is what a busy process waits on, and one round
    trip per call caps it at a few thousand calls a second; callers that each await one
    script (a send's ingest, a rate-limit check) therefore share the trip. A call's own
    error is raised to its caller only; a failure of the whole trip (a lost connection,
    too few replicas) to every caller of that trip.
    """

    def __init__(
        self, redis: Redis, *, max_batch: int = 256, replication: Replication | None = None
    ) -> None:
        self.redis = redis
        self.max_batch = max_batch
        self.replication = replication
        self._pending: list[tuple[ScriptCall, asyncio.Future[Any]]] = []
        self._flush_scheduled = False

    async def call(self, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(((script, list(keys), list(args)), future))
        if len(self._pending) >= self.max_batch:
            await self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._schedule_flush)
        return await future

    def _schedule_flush(self) -> None:
        self._flush_scheduled = False
        if self._pending:
            task = asyncio.ensure_future(self._flush())
            task.add_done_callback(_consume_exception)

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            results = await run_batch(
                self.redis,
                [call for call, _ in batch],
                raise_on_error=False,
                replication=self.replication,
            )
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


def _consume_exception(task: asyncio.Future[None]) -> None:
    # Every waiter got the exception; the flush task's own copy is not news.
    if not task.cancelled():
        task.exception()
