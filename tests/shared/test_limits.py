"""The shared GCRA limiter on a real Valkey and a Valkey Cluster: a burst, then the
rate, the exact wait, one count for every process, and nothing left behind."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from chat_shared.errors import RateLimited
from chat_shared.limits import RateLimiter, Rule, limit_key, user_subject

RULE = Rule("probe", rate=2.0, burst=3)  # one every 500 ms, three at once


@pytest.fixture(params=["single", "cluster"])
def redis_topology(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_burst_passes_then_the_wait_is_one_interval(redis: Redis) -> None:
    limiter = RateLimiter(redis)
    waits = [await limiter.wait_seconds("ualice", RULE) for _ in range(4)]
    assert waits[:3] == [0, 0, 0]
    assert 0.4 < waits[3] <= 0.5


async def test_refused_requests_are_not_charged(redis: Redis) -> None:
    limiter = RateLimiter(redis)
    for _ in range(3):
        await limiter.wait_seconds("ualice", RULE)
    refused = [await limiter.wait_seconds("ualice", RULE) for _ in range(50)]
    assert all(0 < wait <= 0.5 for wait in refused), "hammering pushed the wait further out"


async def test_checks_of_one_turn_share_a_round_trip_and_two_processes_one_count(
    redis: Redis,
) -> None:
    one, other = RateLimiter(redis), RateLimiter(redis)  # as two gateways would
    waits = await asyncio.gather(
        *(limiter.wait_seconds("ubob", RULE) for limiter in (one, other, one, other, one))
    )
    assert sorted(waits)[:3] == [0, 0, 0]
    assert all(wait > 0 for wait in sorted(waits)[3:])


async def test_check_raises_rate_limited_with_the_wait(redis: Redis) -> None:
    limiter = RateLimiter(redis)
    for _ in range(3):
        await limiter.check(user_subject("carol"), RULE)
    with pytest.raises(RateLimited) as refused:
        await limiter.check(user_subject("carol"), RULE)
    assert 400 <= refused.value.retry_after_ms <= 500
    assert refused.value.retry_after == 1  # whole seconds for Retry-After


async def test_a_cell_expires_once_it_is_full_again(redis: Redis) -> None:
    limiter = RateLimiter(redis)
    await limiter.wait_seconds("udave", RULE)
    ttl_ms = await redis.pttl(limit_key("udave", RULE))
    assert 0 < ttl_ms <= 501
