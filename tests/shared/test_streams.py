"""The shared consumer-group worker on a real Valkey and on a Valkey Cluster (its two
streams in two slots): recovery after a restart, claims of a dead consumer's entries,
dead letters, and an outage that costs no delivery."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from chat_shared.streams import DeadLetters, Entry, GroupWorker
from tests.support.waiting import eventually, running

GROUP = "g"
STREAMS = ["{s0}:t", "{s1}:t"]
DEAD = "dead"


class Recorder:
    """A handler that acknowledges what it sees, except the ids it is told to fail."""

    def __init__(self, poison: set[bytes] = frozenset(), outage: int = 0) -> None:  # type: ignore[assignment]
        self.seen: list[Entry] = []
        self.poison = poison
        self.outage = outage  # rounds that raise, as when the store is away
        self.worker: GroupWorker | None = None

    async def __call__(self, entries: list[Entry]) -> None:
        assert self.worker is not None
        if self.outage:
            self.outage -= 1
            raise ConnectionError("store away")
        self.seen += entries
        good = [e for e in entries if e.fields.get(b"n") not in self.poison]
        for entry in entries:
            if entry not in good:
                self.worker.note_failure(entry, "poison")
        await self.worker.ack(good)

    def values(self) -> list[bytes]:
        return sorted(e.fields[b"n"] for e in self.seen)


@pytest.fixture(params=["single", "cluster"])
def redis_topology(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def worker(redis: Redis, handler: Recorder, consumer: str = "c1", **options: Any) -> GroupWorker:
    settings: dict[str, Any] = {
        "batch_size": 10,
        "block_ms": 50,
        "claim_idle_ms": 100,
        "claim_interval_seconds": 0.05,
        "dead_letters": DeadLetters(DEAD, after=3),
    }
    settings.update(options)
    made = GroupWorker(
        redis, group=GROUP, streams=STREAMS, consumer=consumer, handler=handler, **settings
    )
    handler.worker = made
    return made


async def add(redis: Redis, count: int) -> None:
    for n in range(count):
        await redis.xadd(STREAMS[n % 2], {"n": str(n)})


async def pending(redis: Redis) -> int:
    return sum([int((await redis.xpending(s, GROUP))["pending"]) for s in STREAMS])


async def test_every_stream_is_read_and_everything_acknowledged(redis: Redis) -> None:
    handler = Recorder()
    async with running(worker(redis, handler).run()):
        await add(redis, 20)

        async def all_seen() -> bool:
            return len(handler.seen) == 20 and await pending(redis) == 0

        await eventually(all_seen, "every entry handled and acknowledged")
    assert handler.values() == sorted(str(n).encode() for n in range(20))


async def test_a_restarted_consumer_first_rereads_its_own_pending_entries(redis: Redis) -> None:
    first = Recorder()
    taken = worker(redis, first)
    await taken.ensure_groups()
    await add(redis, 6)
    for stream in STREAMS:  # read, then "crash" before acknowledging
        assert len(await taken.read(stream, ">")) == 3
    again = Recorder()
    # Same name, claiming off: only the own-pending rule can bring them back.
    async with running(worker(redis, again, claim_idle_ms=None).run()):
        await eventually(lambda: len(again.seen) == 6, "own pending entries re-read")
        await eventually(lambda: nothing_pending(redis), "acknowledged")
    assert all(e.deliveries == 2 for e in again.seen), "the re-read counts a delivery"


async def test_entries_of_a_dead_consumer_are_claimed(redis: Redis) -> None:
    dead = worker(redis, Recorder(), consumer="dead")
    await dead.ensure_groups()
    await add(redis, 8)
    for stream in STREAMS:
        await dead.read(stream, ">")
    survivor = Recorder()
    async with running(worker(redis, survivor, consumer="survivor").run()):
        await eventually(lambda: len(survivor.seen) == 8, "claimed entries handled")
        await eventually(lambda: nothing_pending(redis), "acknowledged")


async def test_a_poison_entry_is_dead_lettered_and_the_rest_go_on(redis: Redis) -> None:
    handler = Recorder(poison={b"3"})
    async with running(worker(redis, handler).run()):
        await add(redis, 10)
        await eventually(lambda: dead_lettered(redis), "the dead letter")
        await eventually(lambda: nothing_pending(redis), "nothing left pending")
    (record,) = [fields for _, fields in await redis.xrange(DEAD)]
    assert record[b"f:n"] == b"3"
    assert record[b"_error"] == b"poison"
    assert record[b"_group"] == GROUP.encode()
    assert {e.fields[b"n"] for e in handler.seen} >= {str(n).encode() for n in range(10)}


async def test_an_outage_is_retried_without_counting_deliveries(redis: Redis) -> None:
    handler = Recorder(outage=5)  # more failed rounds than the dead-letter limit
    async with running(worker(redis, handler).run()):
        await add(redis, 4)
        await eventually(lambda: len(handler.seen) == 4, "handled once it is back")
        await eventually(lambda: nothing_pending(redis), "acknowledged")
    assert await redis.exists(DEAD) == 0, "an outage dead-letters nothing"
    assert all(e.deliveries == 1 for e in handler.seen)


async def nothing_pending(redis: Redis) -> bool:
    return await pending(redis) == 0


async def dead_lettered(redis: Redis) -> bool:
    return bool(await redis.exists(DEAD))
