"""``make bench``: load a freshly started embedded stack and report what it carried.

    python -m bench.run [--mode steady|step|connections|group|history|memory] [--seconds 30] ...

Every knob has a ``CHAT_BENCH_<NAME>`` environment variable (``CHAT_BENCH_SECONDS``...).
The JSON result goes to stdout and to ``bench/results/<mode>-<time>.json``; a human table
and progress go to stderr. docs/benchmark.md explains each figure. Exit code 1 when the
promise checker finds a violation, 0 otherwise (targets missed are reported, not fatal).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from bench import report
from bench.ceilings import measure_redis, measure_relay
from bench.load import Finish, WorkerPlan
from bench.pool import GeneratorPool, run_step, sum_finish
from bench.profile import Profiler
from bench.stack import BenchStack, BenchUser, Conversation
from bench.stats import ratio
from bench.verify import checker_summary, record_final_state

RELAY_SECONDS_CAP = 10.0
LATENCY_KEYS = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "sent_p99_ms")


def env_default(name: str, default: Any) -> Any:
    raw = os.environ.get(f"CHAT_BENCH_{name.upper()}")
    return default if raw is None else type(default)(raw)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    add = parser.add_argument
    add(
        "--mode",
        choices=["steady", "step", "connections", "group", "history", "memory"],
        default=env_default("mode", "steady"),
    )
    add("--seconds", type=float, default=env_default("seconds", 30.0), help="load per phase")
    add("--users", type=int, default=env_default("users", 100))
    add("--devices", type=int, default=env_default("devices", 2), help="devices per user")
    add("--workers", type=int, default=env_default("workers", 2), help="generator processes")
    add("--group-size", type=int, default=env_default("group_size", 5), help="0: 1:1 only")
    add(
        "--window",
        type=int,
        default=env_default("window", 4),
        help="unacked sends per device, flat out",
    )
    add(
        "--rate",
        type=float,
        default=env_default("rate", 0.0),
        help="sends/s; 0: measure flat out, then half",
    )
    add("--p99-bound-ms", type=float, default=env_default("p99_bound_ms", 50.0))
    add("--step-start", type=float, default=env_default("step_start", 100.0), help="sends/s")
    add("--step-factor", type=float, default=env_default("step_factor", 1.5))
    add("--step-seconds", type=float, default=env_default("step_seconds", 10.0))
    add("--max-steps", type=int, default=env_default("max_steps", 12))
    add("--connections", type=int, default=env_default("connections", 10_000))
    add("--connect-seconds", type=float, default=env_default("connect_seconds", 120.0))
    add("--group-members", type=int, default=env_default("group_members", 100))
    add("--group-senders", type=int, default=env_default("group_senders", 10))
    add("--drain-seconds", type=float, default=env_default("drain_seconds", 60.0))
    add(
        "--store",
        choices=["sqlite", "cassandra", "both"],
        default=env_default("store", "both"),
        help="history mode: the engines to measure",
    )
    add("--messages", type=int, default=env_default("messages", 2000), help="history mode")
    add("--page-reads", type=int, default=env_default("page_reads", 1000), help="history mode")
    add("--page-limit", type=int, default=env_default("page_limit", 50), help="history mode")
    add(
        "--redis",
        choices=["single", "cluster", "sentinel"],
        default=env_default("redis", "single"),
        help="steady/group/step: also run on this topology and compare it with one Valkey "
        "in the same run (sentinel: without and with CHAT_REDIS_MIN_REPLICAS=1)",
    )
    add(
        "--memory-messages",
        type=int,
        default=env_default("memory_messages", 100),
        help="memory mode: group messages",
    )
    add(
        "--body-chars",
        type=int,
        default=env_default("body_chars", 10_000),
        help="memory mode: characters per body",
    )
    add("--profile", action="store_true", help="py-spy the first gateway during the first phase")
    add("--no-save", action="store_true", help="do not write bench/results/")
    add("--keep-logs", action="store_true", help="keep the run log and the stack's data")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    begun = time.monotonic()
    result: dict[str, Any] = {"mode": args.mode, "machine": report.machine(), "config": vars(args)}
    if args.mode == "connections":
        from bench.connections import run_connections

        result |= asyncio.run(run_connections(args))
    elif args.mode == "history":
        from bench.history_pages import run_history_pages

        result |= asyncio.run(run_history_pages(args))
    elif args.mode == "memory":
        from bench.memory import run_memory

        result |= asyncio.run(run_memory(args))
    else:
        result |= asyncio.run(run_load(args))
    result["seconds_total"] = round(time.monotonic() - begun, 1)
    if not args.no_save:
        report.progress(f"saved {report.save(result)}")
    print(report.table(result), file=sys.stderr)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    checkers = [result.get("checker") or {"ok": True}]
    checkers += [
        {"ok": figures["checker_ok"]}
        for name, figures in (result.get("redis_topologies") or {}).items()
        if name != "single"
    ]
    return 0 if all(checker["ok"] for checker in checkers) else 1


# Building the population ----------------------------------------------------------------


def chat_specs(users: list[BenchUser], group_size: int) -> list[tuple[BenchUser, list[BenchUser]]]:
    """A ring of 1:1 conversations (each user has two peers) and groups of neighbours."""
    specs: list[tuple[BenchUser, list[BenchUser]]] = []
    count = len(users)
    for i, user in enumerate(users if count >= 2 else []):
        if count > 2 or i == 0:  # two users make one pair, not two
            specs.append((user, [users[(i + 1) % count]]))
    if group_size >= 3:
        for start in range(0, count - group_size + 1, group_size):
            members = users[start : start + group_size]
            specs.append((members[0], members))
    return specs


async def build_plans(
    args: argparse.Namespace, stack: BenchStack, log_dir: Path
) -> tuple[list[WorkerPlan], list[Conversation], dict[str, BenchUser]]:
    group = args.mode == "group"
    users = await stack.users(args.group_members if group else args.users)
    by_id = {u.id: u for u in users}
    base = WorkerPlan(
        index=0,
        users=[],
        conversations=[],
        ws_urls=stack.ws_urls,
        history_url=stack.history_url,
        log_dir=str(log_dir),
        devices_per_user=args.devices,
        window=args.window,
        connect_seconds=args.connect_seconds,
    )
    plans: list[WorkerPlan] = []
    conversations: list[Conversation] = []
    if group:
        members = users
        (group,) = await stack.conversations([(members[0], members)])
        conversations.append(group)
        senders = frozenset(u.id for u in members[: args.group_senders])
        for index in range(args.workers):
            share = members[index :: args.workers]
            plans.append(
                replace(
                    base,
                    index=index,
                    users=share,
                    conversations=[group],
                    senders=senders,
                    devices_per_user=1,
                    seed=index,
                )
            )
        return plans, conversations, by_id
    size = -(-len(users) // args.workers)
    for index in range(args.workers):
        share = users[index * size : (index + 1) * size]
        mine = await stack.conversations(chat_specs(share, args.group_size)) if share else []
        conversations += mine
        plans.append(replace(base, index=index, users=share, conversations=mine, seed=index))
    return plans, conversations, by_id


# Load modes ------------------------------------------------------------------------------


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    """The bare ceiling, the chat stack under load, the bare ceiling again (the mean of
    the two is the reference: the machine may be busier at one moment than another)."""
    group = args.mode == "group"
    out: dict[str, Any] = {}
    first = await asyncio.to_thread(measure_bare, args)
    out |= await load_logged(args, {}, out)
    if args.redis != "single":
        out["redis_topologies"] = await compare_topologies(args, out)
    second = await asyncio.to_thread(measure_bare, args)
    bare = {
        "runs": [first, second],
        "deliveries_per_s": round((first["deliveries_per_s"] + second["deliveries_per_s"]) / 2, 1),
        "deliveries_per_server_cpu_s": round(
            (first["deliveries_per_server_cpu_s"] + second["deliveries_per_server_cpu_s"]) / 2, 1
        ),
    }
    out["bare_room_fanout" if group else "bare_relay"] = bare
    gateway_cores = out.get("gateway_cores")
    per_cpu = out["delivered_per_gateway_cpu_s"] = (
        round(out["delivered_per_s"] / gateway_cores, 1)
        if gateway_cores and out.get("delivered_per_s")
        else None
    )
    cpu_ratio = ratio(per_cpu, bare["deliveries_per_server_cpu_s"])
    if group:
        out["group_deliveries_per_s"] = out["delivered_per_s"]
        out["bare_room_fanout_per_s"] = bare["deliveries_per_s"]
        out["ratio_to_bare_room_fanout"] = ratio(out["delivered_per_s"], bare["deliveries_per_s"])
        out["cpu_ratio_to_bare_room_fanout"] = cpu_ratio
        out["targets"] = {
            "group >= 1/2 bare room fan-out": (out["ratio_to_bare_room_fanout"] or 0) >= 0.5
        }
        return out
    out["bare_relay_per_s"] = bare["deliveries_per_s"]
    out["ratio_to_bare_relay"] = ratio(out.get("delivered_per_s"), bare["deliveries_per_s"])
    out["cpu_ratio_to_bare_relay"] = cpu_ratio
    if args.mode == "steady":
        p99 = out.get("p99_ms")
        out["targets"] = {
            "delivered >= 1/3 bare relay": (out["ratio_to_bare_relay"] or 0) >= 1 / 3,
            f"p99 <= {args.p99_bound_ms:g} ms at half rate": p99 is not None
            and p99 <= args.p99_bound_ms,
        }
    return out


async def load_logged(
    args: argparse.Namespace, env: dict[str, str], out: dict[str, Any]
) -> dict[str, Any]:
    """One stack under the mode's load, its run log removed afterwards unless kept."""
    log_dir = Path(tempfile.mkdtemp(prefix="chat-bench-log-"))
    try:
        return await load_stack(args, log_dir, env)
    finally:
        if args.keep_logs:
            out.setdefault("log_dirs", []).append(str(log_dir))
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


# The figures compared across topologies, and whether higher is better.
TOPOLOGY_FIGURES = {"delivered_per_s": True, "p50_ms": False, "p99_ms": False, "sent_p99_ms": False}


async def compare_topologies(args: argparse.Namespace, single: dict[str, Any]) -> dict[str, Any]:
    """The same load on the chosen topology (a local three-primary cluster, or a
    primary, two replicas and three Sentinels without and with a replica wait), each
    figure with its ratio to the one-Valkey run just made."""
    variants = {"cluster": {"CHAT_REDIS_MODE": "cluster"}}
    if args.redis == "sentinel":
        variants = {
            "sentinel": {"CHAT_REDIS_MODE": "sentinel"},
            "sentinel_min_replicas_1": {
                "CHAT_REDIS_MODE": "sentinel",
                "CHAT_REDIS_MIN_REPLICAS": "1",
            },
        }
    compared: dict[str, Any] = {"single": {k: single.get(k) for k in TOPOLOGY_FIGURES}}
    for name, env in variants.items():
        report.progress(f"the same load on redis {name}")
        run = await load_logged(args, env, single)
        figures: dict[str, Any] = {k: run.get(k) for k in TOPOLOGY_FIGURES}
        for key in TOPOLOGY_FIGURES:
            figures[f"{key}_ratio_to_single"] = ratio(run.get(key), single.get(key))
        figures["checker_ok"] = run["checker"]["ok"]
        figures["lost"], figures["duplicates"] = run["lost"], run["duplicates"]
        compared[name] = figures
    return compared


def measure_bare(args: argparse.Namespace) -> dict[str, Any]:
    """The bare relay (rooms of two) or, in group mode, the x10 room fan-out, with as
    many sockets and client processes as the chat load uses."""
    group = args.mode == "group"
    sockets = args.group_members if group else args.users * args.devices
    room = 10 if group else 2
    seconds = min(args.seconds, RELAY_SECONDS_CAP)
    report.progress(f"bare ceiling: rooms of {room}, {sockets} sockets, {seconds:g}s")
    return measure_relay(
        processes=args.workers,
        rooms_per_process=max(1, sockets // room // args.workers),
        room_size=room,
        to_all=group,
        window=args.window,
        seconds=seconds,
    )


async def load_stack(
    args: argparse.Namespace, log_dir: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """A fresh stack, the generators, the phases of the mode, then the checker."""
    out: dict[str, Any] = {}
    report.progress("starting a fresh stack: redis, auth, history, two gateways")
    stack = BenchStack(env=env or {}, keep_data=args.keep_logs).start()
    pool: GeneratorPool | None = None
    try:
        out["redis_ceiling"] = await measure_redis(stack.stack.settings())
        plans, conversations, users = await build_plans(args, stack, log_dir)
        report.progress(f"{len(users)} users, {len(conversations)} conversations; connecting")
        rss_before = stack.gateway_rss_kib()
        pool = GeneratorPool(plans)
        ready = await asyncio.to_thread(pool.start)
        out["connections"] = connections = sum(r["connected"] for r in ready)
        out["gateway_rss_kib"] = rss_after = stack.gateway_rss_kib()
        grown = sum(rss_after) - sum(rss_before)
        out["gateway_rss_per_conn_kb"] = round(grown * 1.024 / max(1, connections), 1)
        profilers = start_profilers(args, stack)
        phase = functools.partial(
            run_step, pool, drain_seconds=args.drain_seconds, stack_pids=stack.pids
        )
        if args.mode == "step":
            out |= await asyncio.to_thread(step_phases, phase, args)
        else:
            out |= await asyncio.to_thread(steady_phases, phase, args, args.mode == "group")
        if profilers:
            out["profile"] = {
                name: await asyncio.to_thread(profiler.wait) for name, profiler in profilers.items()
            }
        out["redis_lag"] = await stack.stream_lag()
        report.progress("recording the final history, then the checker")
        last_seqs = await record_final_state(log_dir, stack.history_url, conversations, users)
        finish = Finish(last_seqs, args.drain_seconds)
        out["finish"] = finished = sum_finish(await asyncio.to_thread(pool.finish, finish))
        pool = None
        out["store_lag"] = sum(last_seqs.values()) - stack.stored_messages()
        out["checker"] = checker = checker_summary(log_dir)
        out["lost"], out["duplicates"] = checker["lost"], checker["duplicates"]
        phase_errors = sum(sum(p["errors"].values()) for p in out["phases"].values())
        out["errors"] = phase_errors + finished["device_errors"]
    finally:
        if pool is not None:
            pool.close()
        stack.stop()
    return out


def start_profilers(args: argparse.Namespace, stack: BenchStack) -> dict[str, Profiler]:
    """py-spy on every gateway for the first phase's length (see bench/profile.py)."""
    if not args.profile:
        return {}
    seconds = args.step_seconds if args.mode == "step" else args.seconds
    report.progress(f"profiling the gateways for {seconds:g}s")
    return {
        f"gateway{index}": Profiler(gateway.process.pid, seconds).start()
        for index, gateway in enumerate(stack.gateway_procs, start=1)
        if gateway.process is not None
    }


def gateway_cores(step: dict[str, Any]) -> float:
    """CPU cores all gateways used over a step (sending and draining)."""
    return round(sum(float(v) for k, v in step["cpu_cores"].items() if k.startswith("gateway")), 2)


Phase = Callable[[str, float, "float | None"], dict[str, Any]]


def steady_phases(phase: Phase, args: argparse.Namespace, group: bool) -> dict[str, Any]:
    """Flat out (throughput), then half that send rate (latency); or one phase at --rate."""
    phases: dict[str, Any] = {}
    if args.rate > 0:
        report.progress(f"load at {args.rate:g} sends/s for {args.seconds:g}s")
        latency = throughput = phases["latency"] = phase("latency", args.seconds, args.rate)
    else:
        report.progress(f"flat out for {args.seconds:g}s (window {args.window} per device)")
        throughput = phases["throughput"] = phase("throughput", args.seconds, None)
        latency = throughput
        if not group:
            half = max(1.0, throughput["sent_per_s"] / 2)
            report.progress(f"half that rate: {half:.0f} sends/s for {args.seconds:g}s")
            latency = phases["latency"] = phase("latency", args.seconds, half)
    return {
        "phases": phases,
        "delivered_per_s": throughput["delivered_per_s"],
        "sent_per_s": throughput["sent_per_s"],
        "gateway_cores": gateway_cores(throughput),
        "latency_rate_sends_per_s": latency["offered_rate"],
        **{k: latency[k] for k in LATENCY_KEYS},
    }


def step_phases(phase: Phase, args: argparse.Namespace) -> dict[str, Any]:
    """Raise the offered rate step by step until p99 passes the bound (or the system
    stops keeping up); the knee is the last step within the bound."""
    phases: dict[str, Any] = {}
    knee: dict[str, Any] = {}
    offered = args.step_start
    for number in range(args.max_steps):
        report.progress(f"step {number}: {offered:.0f} sends/s for {args.step_seconds:g}s")
        step = phases[f"step{number}"] = phase(f"step{number}", args.step_seconds, offered)
        report.progress(f"  p99 {step['p99_ms']} ms, {step['delivered_per_s']} deliveries/s")
        within = (
            step["p99_ms"] is not None
            and step["p99_ms"] <= args.p99_bound_ms
            and step["drained"]
            and step["sends_skipped"] == 0
            and step["sent_per_s"] >= 0.9 * offered
        )
        if not within:
            break
        knee = step
        offered *= args.step_factor
    return {
        "phases": phases,
        "knee_sent_per_s": knee.get("sent_per_s"),
        "gateway_cores": gateway_cores(knee) if knee else None,
        "knee_delivered_per_s": knee.get("delivered_per_s"),
        "delivered_per_s": knee.get("delivered_per_s"),
        "sent_per_s": knee.get("sent_per_s"),
        **{k: knee.get(k) for k in LATENCY_KEYS},
    }


if __name__ == "__main__":
    sys.exit(main())
