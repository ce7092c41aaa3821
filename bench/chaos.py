"""``make chaos``: faults under load, then the promise checker over everything seen.

    python -m bench.chaos [--gap-seconds 10] [--rate 150] [--users 40] [--faults a,b] ...

A fresh stack with two gateways carries a steady open-loop load from generator
processes (devices that resume by cursor and resend unacknowledged sends) while the
faults below strike one after another, spread over the load:

1. kill -9 a gateway, restart it;
2. SIGTERM the other gateway (graceful: 1012 to its sockets), restart it;
3. kill -9 the history service (the ``history`` consumer), restart it;
4. stop the Valkey server and start it again on the same data dir (AOF reload);
   then kill -9 it and start it again on its AOF (a crash, not a shutdown);
5. lock the store against writes (an exclusive SQLite transaction held by this
   process) for longer than history's busy timeout, so persistence fails and retries;
6. stop history (SIGTERM) for a while, so persistence lags, then start it.

With ``--redis-mode sentinel`` the stack runs on a primary, two replicas and three
Sentinels, and the Redis fault is ``kill_redis_primary``: kill -9 the primary, let the
Sentinels promote a replica, start the old primary again (it rejoins as a replica).
``--min-replicas`` sets ``CHAT_REDIS_MIN_REPLICAS``, the replicas a send waits for.

Then the load stops, every device drains, history catches up, and the checker judges
the run log. The bar: zero lost, duplicated, misordered or missing, no device that
needed a history top-up at the end, nothing left unpersisted. Exit 1 otherwise.
The load runs as long as the faults take, with ``--gap-seconds`` of plain load before,
between and after them. Every knob has a ``CHAT_CHAOS_<NAME>`` variable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from bench import report
from bench.checker import Report
from bench.load import Finish, WorkerPlan
from bench.pool import GeneratorPool, run_step, sum_finish
from bench.run import chat_specs
from bench.stack import BenchStack, Conversation
from bench.verify import checker_summary, record_final_state

# Faster hand-overs so that the run spends its time under load, not waiting for timers:
# shard leases move after 2 s, history claims a dead consumer's entries after 5 s.
CHAOS_ENV = {
    "CHAT_FANOUT_LEASE_SECONDS": "2",
    "CHAT_CLAIM_IDLE_MS": "5000",
    "CHAT_CLAIM_INTERVAL_SECONDS": "1",
    "CHAT_SHUTDOWN_GRACE_SECONDS": "5",
    "CHAT_INGEST_SHARDS": "8",
}
STORE_BUSY_TIMEOUT_SECONDS = 10.0  # chat_shared.store.sqlite: PRAGMA busy_timeout=10000


ALL_FAULTS = (
    "kill_gateway",
    "term_gateway",
    "kill_history",
    "restart_valkey",
    "kill_valkey",
    "lock_store",
    "stop_history",
)
LOAD_BOUND_SECONDS = 900.0  # the load stops when the faults are done; this only bounds it


@dataclass(frozen=True)
class ChaosConfig:
    gap_seconds: float = 10.0  # load alone before, between and after the faults
    rate: float = 150.0
    users: int = 40
    devices: int = 2
    workers: int = 2
    group_size: int = 4
    store_lock_seconds: float = STORE_BUSY_TIMEOUT_SECONDS + 2
    history_down_seconds: float = 15.0
    drain_seconds: float = 120.0
    faults: str = ",".join(ALL_FAULTS)  # a comma-separated subset, run in this order
    redis_mode: str = "single"  # or sentinel (the Redis faults are then kill_redis_primary)
    min_replicas: int = 0


@dataclass
class Fault:
    name: str
    action: Callable[[], None]
    at: float = 0.0  # seconds after the load started
    took: float = 0.0


def faults(stack: BenchStack, config: ChaosConfig) -> list[Fault]:
    first, second = stack.gateway_procs[0], stack.gateway_procs[1]

    def kill_gateway() -> None:
        first.kill()
        first.start().wait_ready()

    def term_gateway() -> None:
        second.stop()
        second.start().wait_ready()

    def kill_history() -> None:
        stack.history.kill()
        stack.history.start().wait_ready()

    def restart_valkey() -> None:
        valkey = stack.stack.valkey
        assert valkey is not None
        valkey.stop()
        valkey.start()

    def kill_valkey() -> None:
        valkey = stack.stack.valkey
        assert valkey is not None
        valkey.kill()
        valkey.start()

    def kill_redis_primary() -> None:
        sentinel = stack.stack.redis_sentinel
        assert sentinel is not None
        dead = sentinel.kill_primary()
        sentinel.rejoin(dead)

    def lock_store() -> None:
        conn = sqlite3.connect(stack.data_dir / "history.db", timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            time.sleep(config.store_lock_seconds)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    def stop_history() -> None:
        stack.history.stop()
        time.sleep(config.history_down_seconds)
        stack.history.start().wait_ready()

    known = {
        "kill_gateway": Fault("kill -9 gateway1, restart", kill_gateway),
        "term_gateway": Fault("SIGTERM gateway2, restart", term_gateway),
        "kill_history": Fault("kill -9 history, restart", kill_history),
        "restart_valkey": Fault("restart valkey (stop, start on the AOF)", restart_valkey),
        "kill_valkey": Fault("kill -9 valkey, start it on its AOF", kill_valkey),
        "kill_redis_primary": Fault(
            "kill -9 the Redis primary; Sentinel promotes a replica", kill_redis_primary
        ),
        "lock_store": Fault(f"lock the store for {config.store_lock_seconds:g}s", lock_store),
        "stop_history": Fault(f"stop history for {config.history_down_seconds:g}s", stop_history),
    }
    return [known[name.strip()] for name in config.faults.split(",") if name.strip()]


def strike(timeline: list[Fault], gap: float, cut: Callable[[], None]) -> None:
    """The faults one after another with ``gap`` seconds of plain load around each,
    then end the load (the load runs as long as the faults take)."""
    begun = time.monotonic()
    try:
        for fault in timeline:
            time.sleep(gap)
            fault.at = round(time.monotonic() - begun, 1)
            report.progress(f"fault at {fault.at:g}s: {fault.name}")
            started = time.monotonic()
            fault.action()
            fault.took = round(time.monotonic() - started, 1)
        time.sleep(gap)
    finally:
        cut()


async def build(
    stack: BenchStack, config: ChaosConfig, log_dir: Path
) -> tuple[list[WorkerPlan], list[Conversation], dict[str, Any]]:
    users = await stack.users(config.users, prefix="c")
    base = WorkerPlan(0, [], [], stack.ws_urls, stack.history_url, str(log_dir))
    base = replace(base, devices_per_user=config.devices, max_outstanding=1000)
    plans, conversations = [], []
    size = -(-len(users) // config.workers)
    for index in range(config.workers):
        share = users[index * size : (index + 1) * size]
        mine = await stack.conversations(chat_specs(share, config.group_size))
        conversations += mine
        plans.append(replace(base, index=index, users=share, conversations=mine, seed=index))
    return plans, conversations, {u.id: u for u in users}


async def wait_persisted(stack: BenchStack, seconds: float) -> dict[str, dict[str, int]]:
    """Until the ``history`` group has nothing pending or unread (or the time is up)."""
    deadline = time.monotonic() + seconds
    while True:
        lag = await stack.stream_lag()
        history = lag["history"]
        if history["pending"] + history["unread"] == 0 or time.monotonic() > deadline:
            return lag
        await asyncio.sleep(0.5)


async def run_chaos(config: ChaosConfig, *, keep: bool = False) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="chat-chaos-log-"))
    report.progress("starting a fresh stack: valkey, auth, history, two gateways")
    env = {
        **CHAOS_ENV,
        "CHAT_REDIS_MODE": config.redis_mode,
        "CHAT_REDIS_MIN_REPLICAS": str(config.min_replicas),
    }
    stack = BenchStack(env=env, keep_data=keep).start()
    pool: GeneratorPool | None = None
    out: dict[str, Any] = {"mode": "chaos", "machine": report.machine(), "config": vars(config)}
    try:
        plans, conversations, users = await build(stack, config, log_dir)
        pool = GeneratorPool(plans)
        ready = await asyncio.to_thread(pool.start)
        out["connections"] = sum(r["connected"] for r in ready)
        timeline = faults(stack, config)
        report.progress(f"load at {config.rate:g} sends/s with {len(timeline)} faults")
        striker = threading.Thread(
            target=strike, args=(timeline, config.gap_seconds, pool.cut.set), daemon=True
        )
        striker.start()
        load = await asyncio.to_thread(
            run_step, pool, "chaos", LOAD_BOUND_SECONDS, config.rate, config.drain_seconds
        )
        await asyncio.to_thread(striker.join)
        out["faults"] = [{"name": f.name, "at_s": f.at, "took_s": f.took} for f in timeline]
        out["load"] = load
        report.progress("load over; waiting for history to persist everything")
        out["redis_lag"] = await wait_persisted(stack, config.drain_seconds)
        last_seqs = await record_final_state(log_dir, stack.history_url, conversations, users)
        finish = Finish(last_seqs, config.drain_seconds)
        out["finish"] = sum_finish(await asyncio.to_thread(pool.finish, finish))
        pool = None
        out["unpersisted"] = sum(last_seqs.values()) - stack.stored_messages()
        out["checker"] = checker = checker_summary(log_dir)
    finally:
        if pool is not None:
            pool.close()
        stack.stop()
        if keep:
            out["log_dir"] = str(log_dir)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    out["violations"] = violations(out, checker)
    out["ok"] = not out["violations"]
    return out


def violations(out: dict[str, Any], checker: Report) -> list[str]:
    found = [
        f"{kind}: {checker[kind]}"
        for kind in ("lost", "duplicates", "order_violations", "gaps", "mismatches")
        if checker[kind]
    ]
    if checker["non_member_deliveries"]:
        found.append(f"non_member_deliveries: {checker['non_member_deliveries']}")
    if out["finish"]["final_fills"]:
        found.append(f"messages only a history top-up delivered: {out['finish']['final_fills']}")
    if out["finish"]["device_errors"]:
        found.append(f"devices that failed: {out['finish']['device_errors']}")
    if out["unpersisted"]:
        found.append(f"acknowledged messages not in the store: {out['unpersisted']}")
    if not checker["totals"]["acked"]:
        found.append("nothing was acknowledged: the load did not run")
    return found


def parse_args(argv: Sequence[str] | None) -> tuple[ChaosConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    defaults = ChaosConfig()
    for name, value in vars(defaults).items():
        env = os.environ.get(f"CHAT_CHAOS_{name.upper()}")
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=type(value),
            default=value if env is None else type(value)(env),
        )
    parser.add_argument("--keep", action="store_true", help="keep the run log and data")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    fields = {name: getattr(args, name) for name in vars(defaults)}
    return ChaosConfig(**fields), args


def main(argv: Sequence[str] | None = None) -> int:
    config, args = parse_args(argv)
    begun = time.monotonic()
    out = asyncio.run(run_chaos(config, keep=args.keep))
    out["seconds_total"] = round(time.monotonic() - begun, 1)
    if not args.no_save:
        report.progress(f"saved {report.save(out)}")
    print(orjson.dumps(out["checker"], option=orjson.OPT_INDENT_2).decode())
    print(
        orjson.dumps(
            {k: v for k, v in out.items() if k != "checker"}, option=orjson.OPT_INDENT_2
        ).decode()
    )
    verdict = "held" if out["ok"] else "VIOLATED: " + "; ".join(out["violations"])
    report.progress(f"promises {verdict}")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
