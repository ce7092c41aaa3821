"""The load generator: one process drives many :class:`~bench.device.Device` on uvloop.

The controller (``bench.run``, ``bench.chaos``) starts several of these processes, each
with its own users and devices, and steers them over two queues: a ``Step`` (send at a
rate, or as fast as a window of unacknowledged sends allows, for some seconds, then
drain), ``Finish`` (catch up with the final history, mark every device complete, stop).
Each answers with a plain-dict report, so nothing but numbers crosses processes.

Latency is carried in the message body (the sender's ``time.monotonic()``, a clock all
processes of the machine share), so a delivery is timed even when the sending device
lives in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import random
import resource
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from bench.device import Device
from bench.logs import CompleteRecord, LogWriter, Record
from bench.stack import BenchUser, Conversation

ACK_WAIT_SECONDS = 60.0
QUIET_SECONDS = 0.3  # no delivery for this long (and nothing unacked) ends a drain


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    users: list[BenchUser]
    conversations: list[Conversation]  # those with a member among ``users``
    ws_urls: list[str]
    history_url: str
    log_dir: str
    devices_per_user: int = 2
    senders: frozenset[str] | None = None  # user ids that send; None: all
    window: int = 4  # sends per device in flight (until their own copy is back), flat out
    max_outstanding: int = 200  # per device, at a set rate: beyond it a send is skipped
    body_chars: int = 100
    seed: int = 0
    connect_seconds: float = 60.0


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float
    rate: float | None  # sends per second for this process; None: flat out (window)
    drain_seconds: float = 30.0


@dataclass(frozen=True)
class Finish:
    final_seqs: dict[str, int]  # conversation id -> last seq in history
    drain_seconds: float = 60.0


Command = Step | Finish | None


@dataclass
class Meter:
    """Counts what the devices of this process see, per step."""

    step: int = -1
    window_open: bool = False
    in_window: int = 0  # deliveries to a device other than the sender, while the window is open
    last_delivery: float = 0.0
    latencies: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    # Flat-out sends waiting for their own copy to come back through the fan-out.
    own_copies: dict[str, asyncio.Future[None]] = field(default_factory=dict)

    def on_message(self, device_id: str, message: dict[str, Any]) -> None:
        now = time.monotonic()
        self.last_delivery = now
        client_id = str(message.get("client_id", ""))
        if client_id.rsplit("-", 1)[0] == device_id:  # the sending device's own copy
            waiting = self.own_copies.pop(client_id, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(None)
            return
        if self.window_open:
            self.in_window += 1
        step, _, sent_at = str(message.get("body", "")).partition("|")
        with contextlib.suppress(ValueError):
            self.latencies[int(step)].append(now - float(sent_at.partition("|")[0]))


class LoadDevice(Device):
    """A Device that also reports every message frame to the process's meter."""

    def __init__(self, *args: Any, meter: Meter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.meter = meter

    async def _handle(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "message":
            self.meter.on_message(self.device_id, frame["message"])
        await super()._handle(frame)


def raise_open_file_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit; answers the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Worker:
    def __init__(
        self, plan: WorkerPlan, cut: multiprocessing.synchronize.Event | None = None
    ) -> None:
        self.plan = plan
        self.cut = cut  # set by the controller: end the current step's sending now
        self.meter = Meter()
        self.rng = random.Random(plan.seed)
        self.writer = LogWriter(plan.log_dir, f"worker{plan.index}")
        self.records = 0
        self.stop = asyncio.Event()
        self.devices: list[LoadDevice] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.device_errors: list[str] = []
        self.conversations_of: dict[str, list[str]] = defaultdict(list)
        for conversation in plan.conversations:
            for member in conversation.members:
                self.conversations_of[member].append(conversation.id)
        self.acked_seq: dict[str, int] = {}
        self.inflight: set[asyncio.Task[None]] = set()
        self.outstanding: dict[str, int] = defaultdict(int)
        self.client_ids = itertools.count()
        self.padding = "x" * plan.body_chars

    def log(self, record: Record) -> None:
        self.records += 1
        self.writer.write(record)

    async def connect(self) -> dict[str, Any]:
        plan = self.plan
        for user_index, user in enumerate(plan.users):
            for d in range(plan.devices_per_user):
                turn = (user_index + d) % len(plan.ws_urls)
                device = LoadDevice(
                    user.id,
                    f"w{plan.index}u{user_index}d{d}",
                    user.token,
                    plan.ws_urls[turn:] + plan.ws_urls[:turn],
                    plan.history_url,
                    self.log,
                    conversations=self.conversations_of[user.id],
                    sent_times={},  # latency comes from the body (see Meter)
                    meter=self.meter,
                )
                self.devices.append(device)
                self.tasks.append(asyncio.create_task(self._run_device(device)))
        deadline = time.monotonic() + plan.connect_seconds
        for device in self.devices:
            remaining = max(0.01, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(device.connected.wait(), remaining)
        connected = sum(1 for d in self.devices if d.connected.is_set())
        return {"devices": len(self.devices), "connected": connected}

    async def _run_device(self, device: LoadDevice) -> None:
        try:
            await device.run(self.stop)
        except Exception as exc:  # a fatal close (4401...) ends that device only
            self.device_errors.append(f"{device.device_id}: {exc}")

    # Sending ----------------------------------------------------------------------------

    def _senders(self) -> list[LoadDevice]:
        chosen = self.plan.senders
        return [
            d
            for d in self.devices
            if (chosen is None or d.user_id in chosen) and self.conversations_of[d.user_id]
        ]

    async def _send_one(
        self, device: LoadDevice, step: int, errors: dict[str, int], delivered: bool = False
    ) -> None:
        """One send; with ``delivered``, also wait until the sender's own copy arrives
        through the fan-out (end-to-end flow control: flat out cannot outrun delivery)."""
        conversation = self.rng.choice(self.conversations_of[device.user_id])
        body = f"{step}|{time.monotonic():.6f}|{self.padding}"
        client_id = f"{device.device_id}-{next(self.client_ids)}"
        self.outstanding[device.device_id] += 1
        own_copy = asyncio.get_running_loop().create_future()
        if delivered:
            self.meter.own_copies[client_id] = own_copy
        try:
            sent = await device.send(conversation, body, client_id, ack_wait=ACK_WAIT_SECONDS)
            seq = int(sent["seq"])
            if seq > self.acked_seq.get(conversation, 0):
                self.acked_seq[conversation] = seq
            if delivered:
                try:
                    await asyncio.wait_for(own_copy, ACK_WAIT_SECONDS)
                except TimeoutError:
                    errors["own_copy_timeout"] += 1
        except TimeoutError:
            errors["ack_timeout"] += 1
        except Exception as exc:
            errors[type(exc).__name__] += 1
        finally:
            self.meter.own_copies.pop(client_id, None)
            self.outstanding[device.device_id] -= 1

    def _spawn_send(self, device: LoadDevice, step: int, errors: dict[str, int]) -> None:
        task = asyncio.create_task(self._send_one(device, step, errors))
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    def _sending(self, deadline: float) -> bool:
        return time.monotonic() < deadline and not (self.cut is not None and self.cut.is_set())

    async def _flat_out(self, step: int, deadline: float, errors: dict[str, int]) -> int:
        started = 0

        async def lane(device: LoadDevice) -> None:
            nonlocal started
            while self._sending(deadline):
                started += 1
                await self._send_one(device, step, errors, delivered=True)

        senders = self._senders()
        await asyncio.gather(*(lane(d) for d in senders for _ in range(self.plan.window)))
        return started

    async def _at_rate(
        self, step: int, rate: float, deadline: float, errors: dict[str, int]
    ) -> tuple[int, int]:
        """Open loop: sends are due at a fixed rate whatever the answers do, so a slow
        system shows up as latency, not as a lower offered load."""
        senders = self._senders()
        turn = itertools.cycle(range(len(senders)))
        start = time.monotonic()
        started = skipped = 0
        while self._sending(deadline):
            due = int((time.monotonic() - start) * rate) - started - skipped
            for _ in range(due):
                device = senders[next(turn)]
                if self.outstanding[device.device_id] >= self.plan.max_outstanding:
                    skipped += 1
                    continue
                started += 1
                self._spawn_send(device, step, errors)
            await asyncio.sleep(0.002)
        return started, skipped

    async def run_step(self, number: int, step: Step) -> dict[str, Any]:
        errors: dict[str, int] = defaultdict(int)
        acked_before = sum(d.stats.acked for d in self.devices)
        self.meter.step, self.meter.in_window, self.meter.window_open = number, 0, True
        begun = time.monotonic()
        deadline = begun + step.seconds
        skipped = 0
        if step.rate is None:
            started = await self._flat_out(number, deadline, errors)
        else:
            started, skipped = await self._at_rate(number, step.rate, deadline, errors)
        elapsed = time.monotonic() - begun
        self.meter.window_open = False
        in_window = self.meter.in_window
        drained = await self.drain(time.monotonic() + step.drain_seconds)
        sent_latencies = [x for d in self.devices for x in d.stats.send_latencies]
        for device in self.devices:
            device.stats.send_latencies.clear()
        return {
            "name": step.name,
            "seconds": round(elapsed, 3),
            "started": started,
            "skipped": skipped,
            "acked": sum(d.stats.acked for d in self.devices) - acked_before,
            "errors": dict(errors),
            "delivered_in_window": in_window,
            "latencies": self.meter.latencies.pop(number, []),
            "sent_latencies": sent_latencies,
            "drained": drained,
            "unacked": sum(self.outstanding.values()),
        }

    async def drain(self, deadline: float) -> bool:
        """Wait for every send's answer and for every local device to hold every seq a
        local send was given, then for a quiet moment (deliveries sent by other
        processes); False if the deadline came first."""
        while time.monotonic() < deadline:
            quiet = time.monotonic() - self.meter.last_delivery > QUIET_SECONDS
            if not self.inflight and quiet and self._caught_up(self.acked_seq):
                return True
            await asyncio.sleep(0.05)
        return False

    def _caught_up(self, seqs: dict[str, int]) -> bool:
        return all(
            device.last_seq.get(conversation, 0) >= seqs.get(conversation, 0)
            for device in self.devices
            for conversation in self.conversations_of[device.user_id]
        )

    async def finish(self, finish: Finish) -> dict[str, Any]:
        """Catch up with the final history, top up by history where live delivery did
        not (counted: a healthy run needs none), then mark every device complete."""
        deadline = time.monotonic() + finish.drain_seconds
        # Polling: progress is spread over every device's state, not one event.
        while time.monotonic() < deadline and not self._caught_up(finish.final_seqs):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        filled = 0
        behind: list[str] = []
        for device in self.devices:
            mine = self.conversations_of[device.user_id]
            gaps = {
                c: (device.last_seq.get(c, 0), finish.final_seqs.get(c, 0))
                for c in mine
                if device.last_seq.get(c, 0) < finish.final_seqs.get(c, 0)
            }
            if gaps:
                behind.append(f"{device.device_id} sessions={device.stats.sessions} {gaps}")
                filled += await device.fill("final")
        for device in self.devices:
            self.log(CompleteRecord(device.user_id, device.device_id))
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.writer.close()
        return {
            "final_fills": filled,
            "behind": behind,
            "records": self.records,
            "sessions": sum(d.stats.sessions for d in self.devices),
            "closes": _merge(d.stats.closes for d in self.devices),
            "device_errors": self.device_errors[:20],
            "device_error_count": len(self.device_errors),
        }


def _merge(counts: Any) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for mapping in counts:
        for code, n in mapping.items():
            total[str(code)] += n
    return dict(total)


async def _serve(
    plan: WorkerPlan,
    commands: multiprocessing.queues.Queue[Command],
    answers: multiprocessing.queues.Queue[dict[str, Any]],
    cut: multiprocessing.synchronize.Event,
) -> None:
    worker = Worker(plan, cut)
    answers.put({"worker": plan.index, "ready": await worker.connect()})
    number = 0
    while True:
        command = await asyncio.to_thread(commands.get)
        if isinstance(command, Step):
            answers.put({"worker": plan.index, "step": await worker.run_step(number, command)})
            number += 1
        elif isinstance(command, Finish):
            answers.put({"worker": plan.index, "finish": await worker.finish(command)})
            return
        else:
            worker.stop.set()
            worker.writer.close()
            return


def worker_main(
    plan: WorkerPlan,
    commands: multiprocessing.queues.Queue[Command],
    answers: multiprocessing.queues.Queue[dict[str, Any]],
    cut: multiprocessing.synchronize.Event,
) -> None:
    """Entry point of a generator process (multiprocessing, spawn)."""
    raise_open_file_limit()
    Path(plan.log_dir).mkdir(parents=True, exist_ok=True)
    uvloop.run(_serve(plan, commands, answers, cut))
