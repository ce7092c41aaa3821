"""The controller's side of the generator processes: start, steer, combine, stop."""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import queue
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from bench.load import Command, Finish, Step, WorkerPlan, worker_main
from bench.stack import cpu_seconds
from bench.stats import latency_summary, rate

ANSWER_SLACK_SECONDS = 60.0


class GeneratorPool:
    """Generator processes (spawned: never fork a process holding threads or sockets)."""

    def __init__(self, plans: Sequence[WorkerPlan]) -> None:
        context = multiprocessing.get_context("spawn")
        self.plans = list(plans)
        self.answers: multiprocessing.queues.Queue[dict[str, Any]] = context.Queue()
        self.commands: list[multiprocessing.queues.Queue[Command]] = []
        self.cut = context.Event()  # ends the running step's sending early (chaos)
        self.processes = []
        for plan in self.plans:
            commands: multiprocessing.queues.Queue[Command] = context.Queue()
            process = context.Process(
                target=worker_main,
                args=(plan, commands, self.answers, self.cut),
                name=f"bench-worker-{plan.index}",
                daemon=True,
            )
            self.commands.append(commands)
            self.processes.append(process)

    def start(self) -> list[dict[str, Any]]:
        for process in self.processes:
            process.start()
        timeout = max(p.connect_seconds for p in self.plans) + ANSWER_SLACK_SECONDS
        return self._collect("ready", timeout)

    def step(self, steps: Sequence[Step]) -> list[dict[str, Any]]:
        """One step per worker (each with its share of the rate); their reports."""
        self.cut.clear()
        for commands, step in zip(self.commands, steps, strict=True):
            commands.put(step)
        timeout = max(s.seconds + s.drain_seconds for s in steps) + ANSWER_SLACK_SECONDS
        return self._collect("step", timeout)

    def finish(self, finish: Finish) -> list[dict[str, Any]]:
        for commands in self.commands:
            commands.put(finish)
        return self._collect("finish", finish.drain_seconds + 2 * ANSWER_SLACK_SECONDS)

    def close(self) -> None:
        for commands, process in zip(self.commands, self.processes, strict=True):
            if process.is_alive():
                commands.put(None)
        deadline = time.monotonic() + 10
        for process in self.processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(5)

    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self.processes if p.pid is not None and p.is_alive()}

    def _collect(self, key: str, timeout: float) -> list[dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(found) < len(self.processes):
            dead = [p.name for p in self.processes if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"generator process failed: {dead}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"generators did not answer {key!r} in {timeout:.0f}s")
            try:
                answer = self.answers.get(timeout=0.5)
            except queue.Empty:
                continue
            if key in answer:
                found[int(answer["worker"])] = answer[key]
        return [found[i] for i in sorted(found)]


def split_rate(total: float | None, plans: Sequence[WorkerPlan]) -> list[float | None]:
    """Each worker's share of a total send rate, by how many devices it sends from."""
    if total is None:
        return [None] * len(plans)
    weights = [sending_devices(p) for p in plans]
    whole = sum(weights) or 1
    return [total * w / whole for w in weights]


def sending_devices(plan: WorkerPlan) -> int:
    users = [u for u in plan.users if plan.senders is None or u.id in plan.senders]
    return len(users) * plan.devices_per_user


class CpuMeter:
    """CPU cores each process used between ``start`` and ``stop`` (its name -> cores);
    generator processes are summed as ``generators``."""

    def __init__(self, pids: Callable[[], dict[str, int]]) -> None:
        self.pids = pids
        self.before: dict[str, tuple[int, float]] = {}
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        self.before = {name: (pid, cpu_seconds(pid)) for name, pid in self.pids().items()}

    def stop(self) -> dict[str, float]:
        elapsed = max(1e-6, time.monotonic() - self.started)
        cores: dict[str, float] = defaultdict(float)
        for name, (pid, used) in self.before.items():
            label = "generators" if name.startswith("bench-worker") else name
            cores[label] += max(0.0, cpu_seconds(pid) - used) / elapsed
        return {name: round(value, 2) for name, value in sorted(cores.items())}


def run_step(
    pool: GeneratorPool,
    name: str,
    seconds: float,
    total_rate: float | None,
    drain_seconds: float,
    stack_pids: Callable[[], dict[str, int]] | None = None,
) -> dict[str, Any]:
    """One step on every worker; with ``stack_pids``, also the CPU cores each process
    used over the step (sending and draining)."""
    shares = split_rate(total_rate, pool.plans)
    steps = [Step(name, seconds, share, drain_seconds) for share in shares]
    meter = CpuMeter(lambda: {**(stack_pids() if stack_pids else {}), **pool.pids()})
    meter.start()
    reports = pool.step(steps)
    combined = combine(name, total_rate, reports)
    combined["cpu_cores"] = meter.stop()
    return combined


def combine(name: str, total_rate: float | None, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One step's figures over every worker."""
    seconds = max(r["seconds"] for r in reports)
    latencies = [x for r in reports for x in r["latencies"]]
    errors: dict[str, int] = defaultdict(int)
    for report in reports:
        for kind, count in report["errors"].items():
            errors[kind] += count
    acked = sum(r["acked"] for r in reports)
    delivered = sum(r["delivered_in_window"] for r in reports)
    return {
        "step": name,
        "offered_rate": None if total_rate is None else round(total_rate, 1),
        "seconds": seconds,
        "sends_started": sum(r["started"] for r in reports),
        "sends_skipped": sum(r["skipped"] for r in reports),
        "acked": acked,
        "sent_per_s": rate(acked, seconds),
        "delivered_per_s": rate(delivered, seconds),
        "deliveries_timed": len(latencies),
        **latency_summary(latencies),
        **latency_summary([x for r in reports for x in r["sent_latencies"]], "sent_"),
        "errors": dict(errors),
        "drained": all(r["drained"] for r in reports),
        "unacked_after_drain": sum(r["unacked"] for r in reports),
    }


def sum_finish(reports: list[dict[str, Any]]) -> dict[str, Any]:
    closes: dict[str, int] = defaultdict(int)
    for report in reports:
        for code, count in report["closes"].items():
            closes[code] += count
    return {
        "final_fills": sum(r["final_fills"] for r in reports),
        "devices_behind": sum(len(r["behind"]) for r in reports),
        "behind_examples": [b for r in reports for b in r["behind"]][:10],
        "sessions": sum(r["sessions"] for r in reports),
        "closes": dict(closes),
        "device_errors": sum(r["device_error_count"] for r in reports),
        "device_error_examples": [e for r in reports for e in r["device_errors"]][:10],
    }


ProgressFn = Callable[[str], None]
