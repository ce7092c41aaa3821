"""Redis killed under load: one Valkey with kill -9 and restarted on its append-only
file, and a Sentinel-watched primary with kill -9 and replaced by a promoted replica.

Each runs the chaos load (multi-device users, 1:1 and groups, resuming devices that
resend what was not acknowledged) and judges the whole run with the promise checker.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from bench.chaos import ChaosConfig, run_chaos

pytestmark = pytest.mark.slow

LOAD = ChaosConfig(
    gap_seconds=3,
    rate=80,
    users=12,
    devices=2,
    workers=1,
    group_size=3,
    drain_seconds=60,
)

# What a seq reused after a failover would look like to the checker: the acknowledged
# message and the stored one under the same seq differ (a mismatch), or one seq shows
# two messages (a duplicate), or a device sees seqs go backwards.
REUSE = ("duplicates", "mismatches", "order_violations")


@pytest.mark.timeout(240)
async def test_kill_9_of_valkey_restarted_on_its_aof_loses_nothing() -> None:
    out = await run_chaos(replace(LOAD, faults="kill_valkey"))

    assert out["ok"], (out["violations"], out["checker"]["examples"])
    assert out["load"]["acked"] >= LOAD.rate * out["load"]["seconds"] * 0.8
    # The crash cut the services' connections; devices rode through without a gap.
    assert out["checker"]["lost"] == 0


@pytest.mark.timeout(300)
async def test_sentinel_failover_with_one_replica_required_loses_nothing() -> None:
    """CHAT_REDIS_MIN_REPLICAS=1: every acknowledged send was on a replica before its
    ``sent`` frame, so the promoted replica holds it."""
    config = replace(LOAD, faults="kill_redis_primary", redis_mode="sentinel", min_replicas=1)
    out = await run_chaos(config)

    assert out["ok"], (out["violations"], out["checker"]["examples"])
    assert out["load"]["acked"] >= LOAD.rate * out["load"]["seconds"] * 0.8
    assert out["faults"][0]["name"].startswith("kill -9 the Redis primary")


@pytest.mark.timeout(300)
async def test_sentinel_failover_without_replica_wait_never_reuses_a_seq() -> None:
    """CHAT_REDIS_MIN_REPLICAS=0: a send is acknowledged once the primary has it, so
    what the primary had acknowledged but not yet streamed to a replica when it died
    is lost (the checker's ``lost``; on loopback that window is the rest of one event
    loop pass of the primary and usually empty). Whatever the promoted replica lacks,
    no seq that history stored is handed out again: the floors fence every counter.
    (A seq acknowledged and lost before history read it can be given again; that is
    why the production overlay waits for one replica.)"""
    config = replace(LOAD, faults="kill_redis_primary", redis_mode="sentinel", min_replicas=0)
    out = await run_chaos(config)

    checker = out["checker"]
    logging.getLogger(__name__).warning(
        "failover without WAIT: %d of %d acknowledged sends lost",
        checker["lost"],
        checker["totals"]["acked"],
    )
    assert not any(checker[kind] for kind in REUSE), checker["examples"]
    assert not checker["non_member_deliveries"]
    assert out["finish"]["device_errors"] == 0
    assert checker["totals"]["acked"] >= LOAD.rate * out["load"]["seconds"] * 0.8
